import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createFakeClock } from '../util/index.js';
import { TimerQueue } from './timer-queue.js';

describe('timer queue', () => {
  it('runs many timers on one clock timer, each at its time, ties in the order set', async () => {
    const clock = createFakeClock(0);
    const q = new TimerQueue(clock, true);
    const fired: [string, number][] = [];
    const at = (name: string, ms: number) =>
      q.set(() => fired.push([name, clock.monotonicMs()]), ms);
    at('c', 300);
    at('a', 100);
    at('b1', 200);
    at('b2', 200);
    expect(clock.pending()).toBe(1);
    await clock.advance(250);
    expect(fired).toEqual([
      ['a', 100],
      ['b1', 200],
      ['b2', 200],
    ]);
    await clock.advance(100);
    expect(fired.at(-1)).toEqual(['c', 300]);
    expect(q.size).toBe(0);
    expect(clock.pending()).toBe(0);
  });

  it('cancel removes a timer; the last one cancelled leaves no clock timer', async () => {
    const clock = createFakeClock(0);
    const q = new TimerQueue(clock, true);
    let fired = 0;
    const a = q.set(() => fired++, 100);
    const b = q.set(() => fired++, 50);
    b.cancel();
    b.cancel();
    await clock.advance(60);
    expect(fired).toBe(0);
    a.cancel();
    expect(clock.pending()).toBe(0);
    await clock.advance(100);
    expect(fired).toBe(0);
  });

  it('a timer set earlier than the armed one re-arms the clock timer', async () => {
    const clock = createFakeClock(0);
    const q = new TimerQueue(clock, true);
    const fired: number[] = [];
    q.set(() => fired.push(clock.monotonicMs()), 1000);
    q.set(() => fired.push(clock.monotonicMs()), 10);
    await clock.advance(1000);
    expect(fired).toEqual([10, 1000]);
  });

  it('fires any set of timers in due-time order, whatever is cancelled', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ at: fc.integer({ min: 0, max: 500 }), cancel: fc.boolean() }), {
          maxLength: 60,
        }),
        async (specs) => {
          const clock = createFakeClock(0);
          const q = new TimerQueue(clock, false);
          const fired: number[] = [];
          const timers = specs.map((s, i) => q.set(() => fired.push(i), s.at));
          specs.forEach((s, i) => {
            if (s.cancel) timers[i]?.cancel();
          });
          await clock.advance(600);
          const expected = specs
            .map((s, i) => ({ ...s, i }))
            .filter((s) => !s.cancel)
            .sort((a, b) => a.at - b.at || a.i - b.i)
            .map((s) => s.i);
          expect(fired).toEqual(expected);
          expect(clock.pending()).toBe(0);
        },
      ),
      { numRuns: 100 },
    );
  });
});
