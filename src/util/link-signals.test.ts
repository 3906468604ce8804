import { describe, expect, it } from 'vitest';
import { countListeners } from './abort-listeners.test-support.js';
import { linkSignals } from './link-signals.js';

describe('linkSignals', () => {
  it('aborts with the reason of whichever source aborts first, and detaches from all', () => {
    const a = new AbortController();
    const b = new AbortController();
    const onA = countListeners(a.signal);
    const onB = countListeners(b.signal);
    const link = linkSignals(a.signal, undefined, b.signal);
    expect(link.signal.aborted).toBe(false);
    expect([onA(), onB()]).toEqual([1, 1]);
    b.abort('b first');
    a.abort('a later');
    expect(link.signal.aborted).toBe(true);
    expect(link.signal.reason).toBe('b first');
    expect([onA(), onB()]).toEqual([0, 0]);
  });

  it('is aborted at once when a source already is', () => {
    const a = new AbortController();
    const b = new AbortController();
    b.abort('already');
    const onA = countListeners(a.signal);
    const link = linkSignals(a.signal, b.signal);
    expect(link.signal.reason).toBe('already');
    expect(onA()).toBe(0);
    link.unlink();
  });

  it('unlink leaves a long-lived source with no listener and the link un-aborted', () => {
    const closing = new AbortController();
    const on = countListeners(closing.signal);
    for (let i = 0; i < 100; i++) linkSignals(undefined, closing.signal).unlink();
    expect(on()).toBe(0);
    const link = linkSignals(closing.signal);
    link.unlink();
    link.unlink();
    closing.abort();
    expect(link.signal.aborted).toBe(false);
  });

  it('with no source is a signal that never aborts', () => {
    const link = linkSignals();
    expect(link.signal.aborted).toBe(false);
    link.unlink();
  });

  it('concurrent links on one source share its one listener, removed with the last unlink', () => {
    const shared = new AbortController();
    const on = countListeners(shared.signal);
    const links = Array.from({ length: 100 }, () => linkSignals(shared.signal));
    expect(on()).toBe(1);
    for (const l of links.slice(1)) l.unlink();
    expect(on()).toBe(1);
    links[0]?.unlink();
    expect(on()).toBe(0);
    const again = Array.from({ length: 20 }, () => linkSignals(shared.signal, undefined));
    shared.abort('stop');
    expect(again.every((l) => l.signal.aborted && l.signal.reason === 'stop')).toBe(true);
    expect(on()).toBe(0);
  });
});
