import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createFakeClock } from '../util/index.js';
import { countingClock } from './counting-clock.test-support.js';
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
  it('reschedule moves a pending timer later or earlier, and re-adds a fired or cancelled one', async () => {
    const clock = createFakeClock(0);
    const q = new TimerQueue(clock, true);
    const fired: [string, number][] = [];
    const at = (name: string, ms: number) =>
      q.set(() => fired.push([name, clock.monotonicMs()]), ms);
    const a = at('a', 100);
    const b = at('b', 200);
    a.reschedule(300);
    b.reschedule(50);
    expect(q.size).toBe(2);
    await clock.advance(250);
    expect(fired).toEqual([['b', 50]]);
    b.reschedule(260);
    a.cancel();
    a.reschedule(280);
    await clock.advance(100);
    expect(fired).toEqual([
      ['b', 50],
      ['b', 260],
      ['a', 280],
    ]);
    expect(q.size).toBe(0);
    expect(clock.pending()).toBe(0);
  });

  it('a timer moved later keeps the armed clock timer: a wake-up per lead time, not per move', async () => {
    const clock = createFakeClock(0);
    const counting = countingClock(clock);
    const q = new TimerQueue(counting.clock, true);
    const fired: number[] = [];
    const t = q.set(() => fired.push(clock.monotonicMs()), 100);
    // Moved later every 10 ms, as a poll deadline is by every applied diff.
    for (let ms = 10; ms <= 1000; ms += 10) {
      await clock.advance(10);
      t.reschedule(ms + 100);
    }
    expect(fired).toEqual([]);
    // 100 moves over 1 s, 100 ms ahead each time: the clock timer found nothing due ~10 times.
    expect(counting.wakes()).toBeLessThanOrEqual(11);
    await clock.advance(100);
    expect(fired).toEqual([1100]);
  });

  it('fires any set of timers in due-time order, whatever is rescheduled or cancelled', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            at: fc.integer({ min: 0, max: 500 }),
            moveTo: fc.option(fc.integer({ min: 0, max: 500 })),
            cancel: fc.boolean(),
          }),
          // Past 64 timers, the queue's first growth.
          { maxLength: 150 },
        ),
        async (specs) => {
          const clock = createFakeClock(0);
          const q = new TimerQueue(clock, false);
          const fired: number[] = [];
          const timers = specs.map((s, i) => q.set(() => fired.push(i), s.at));
          // A reschedule takes its tie-break place after every timer set or moved before it.
          const place = specs.map((_, i) => i);
          let next = specs.length;
          specs.forEach((s, i) => {
            if (s.moveTo === null) return;
            timers[i]?.reschedule(s.moveTo);
            place[i] = next++;
          });
          specs.forEach((s, i) => {
            if (s.cancel) timers[i]?.cancel();
          });
          await clock.advance(600);
          const expected = specs
            .map((s, i) => ({ at: s.moveTo ?? s.at, cancel: s.cancel, i, place: place[i] ?? 0 }))
            .filter((s) => !s.cancel)
            .sort((a, b) => a.at - b.at || a.place - b.place)
            .map((s) => s.i);
          expect(fired).toEqual(expected);
          expect(clock.pending()).toBe(0);
        },
      ),
      { numRuns: 100 },
    );
  });
});
