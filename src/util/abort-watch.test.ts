import { describe, expect, it } from 'vitest';
import { countListeners } from './abort-listeners.test-support.js';
import { releaseAbort, unwatchAbort, watchAbort } from './abort-watch.js';

describe('abort watch', () => {
  it('adds one listener per signal, whatever the number of watchers', () => {
    const ac = new AbortController();
    const listeners = countListeners(ac.signal);
    const reasons: unknown[] = [];
    const watchers = Array.from({ length: 300 }, (_, i) => ({
      onAbort: (r: unknown) => reasons.push([i, r]),
    }));
    for (const w of watchers) watchAbort(ac.signal, w);
    for (const w of watchers.slice(0, 100)) unwatchAbort(ac.signal, w);
    expect(listeners()).toBe(1);
    ac.abort('stop');
    expect(reasons.length).toBe(200);
    expect(reasons[0]).toEqual([100, 'stop']);
  });

  it('a watcher unwatched before the abort is not called', () => {
    const ac = new AbortController();
    let called = 0;
    const w = { onAbort: () => called++ };
    watchAbort(ac.signal, w);
    unwatchAbort(ac.signal, w);
    ac.abort();
    expect(called).toBe(0);
  });

  it('releaseAbort removes the listener with the last watcher; unwatchAbort keeps it', () => {
    const ac = new AbortController();
    const listeners = countListeners(ac.signal);
    const a = { onAbort: () => {} };
    const b = { onAbort: () => {} };
    watchAbort(ac.signal, a);
    watchAbort(ac.signal, b);
    releaseAbort(ac.signal, a);
    expect(listeners()).toBe(1);
    releaseAbort(ac.signal, b);
    expect(listeners()).toBe(0);
    watchAbort(ac.signal, a);
    unwatchAbort(ac.signal, a);
    expect(listeners()).toBe(1);
  });
});
