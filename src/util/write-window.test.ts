import { describe, expect, it } from 'vitest';
import { createFakeClock } from './fake-clock.js';
import { createWriteWindow } from './write-window.js';

/** A writer on the fake clock: `soon` and `flush` both write at once and log the time. */
function writer(windowUs: number | (() => number)) {
  const clock = createFakeClock();
  const log: string[] = [];
  const window = createWriteWindow({
    windowUs,
    clock,
    soon: () => {
      log.push(`soon@${clock.monotonicMs()}`);
      window.wrote();
    },
    flush: () => {
      log.push(`flush@${clock.monotonicMs()}`);
      window.wrote();
    },
  });
  return { clock, log, window };
}

describe('createWriteWindow', () => {
  it('window 0: every request writes at once, no timer', async () => {
    const { clock, log, window } = writer(0);
    window.request();
    await clock.advance(1);
    window.request();
    window.request();
    expect(log).toEqual(['soon@0', 'soon@1', 'soon@1']);
    expect(clock.pending()).toBe(0);
    expect(window.waiting).toBe(false);
  });

  it('leading edge: the first write, and one after an idle window, go out at once', async () => {
    const { clock, log, window } = writer(2000);
    window.request();
    expect(log).toEqual(['soon@0']);
    await clock.advance(2);
    window.request();
    expect(log).toEqual(['soon@0', 'soon@2']);
    await clock.advance(5);
    window.request();
    expect(log).toEqual(['soon@0', 'soon@2', 'soon@7']);
    expect(clock.pending()).toBe(0);
  });

  it('within the window: requests wait for its end, one timer, one flush', async () => {
    const { clock, log, window } = writer(2000);
    window.request();
    await clock.advance(0.5);
    window.request();
    expect(window.waiting).toBe(true);
    await clock.advance(0.5);
    window.request();
    window.request();
    expect(clock.pending()).toBe(1);
    await clock.advance(0.99);
    expect(log).toEqual(['soon@0']);
    await clock.advance(0.01);
    expect(log).toEqual(['soon@0', 'flush@2']);
    expect(window.waiting).toBe(false);
    // The flush was a write: the next window starts from it.
    window.request();
    expect(log).toEqual(['soon@0', 'flush@2']);
    await clock.advance(2);
    expect(log).toEqual(['soon@0', 'flush@2', 'flush@4']);
  });

  it('counts from the last write, whichever path made it', async () => {
    const { clock, log, window } = writer(1000);
    await clock.advance(10);
    window.wrote(); // e.g. the broker's eager write of a burst
    await clock.advance(0.25);
    window.request();
    await clock.advance(0.75);
    expect(log).toEqual(['flush@11']);
  });

  it('cancel drops the pending flush', async () => {
    const { clock, log, window } = writer(1000);
    window.request();
    window.request();
    expect(clock.pending()).toBe(1);
    window.cancel();
    window.cancel();
    expect(clock.pending()).toBe(0);
    await clock.advance(5);
    expect(log).toEqual(['soon@0']);
  });

  it('reads a live window at every request', async () => {
    let us = 0;
    const { clock, log, window } = writer(() => us);
    window.request();
    window.request();
    expect(log).toEqual(['soon@0', 'soon@0']);
    us = 3000;
    window.request();
    await clock.advance(3);
    expect(log).toEqual(['soon@0', 'soon@0', 'flush@3']);
    us = 0;
    window.request();
    expect(log).toEqual(['soon@0', 'soon@0', 'flush@3', 'soon@3']);
  });
});
