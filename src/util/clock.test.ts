import { afterEach, describe, expect, it, vi } from 'vitest';
import { systemClock } from './clock.js';

describe('systemClock', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('reads Date.now and performance.now', () => {
    const before = Date.now();
    const wall = systemClock.nowMs();
    expect(wall).toBeGreaterThanOrEqual(before);
    expect(wall).toBeLessThanOrEqual(Date.now());
    const m = systemClock.monotonicMs();
    expect(systemClock.monotonicMs()).toBeGreaterThanOrEqual(m);
  });

  it('sets unref()d timers unless keepAlive, clamps negative delays, and cancels', () => {
    const set: { delay: number | undefined; timer: NodeJS.Timeout }[] = [];
    const real = globalThis.setTimeout;
    vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, delay?: number) => {
      const timer = real(fn, 60_000);
      set.push({ delay, timer });
      return timer;
    }) as typeof setTimeout);
    const a = systemClock.setTimer(() => {}, -5);
    const b = systemClock.setTimer(() => {}, 10, { keepAlive: true });
    expect(set.map((s) => s.delay)).toEqual([0, 10]);
    expect(set.map((s) => s.timer.hasRef())).toEqual([false, true]);
    a.cancel();
    b.cancel();
    b.cancel();
  });
});
