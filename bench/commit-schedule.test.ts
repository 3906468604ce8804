/**
 * The e2e writers' commit schedule (`bench/commit-schedule.ts`): phases, one timer for all
 * shards, commits never early, never skipped, one at a time per shard; no real timers.
 */
import { describe, expect, it } from 'vitest';
import { CommitSchedule, commitPhaseMs } from './commit-schedule.js';

function harness(phasesMs: number[], periodMs: number) {
  let now = 0;
  let timer: { fn: () => void; at: number } | undefined;
  const immediates: (() => void)[] = [];
  const started: { i: number; due: number; at: number }[] = [];
  const ends = new Map<string, () => void>();
  const schedule = new CommitSchedule({
    phasesMs,
    periodMs,
    t0: 100,
    nowMs: () => now,
    setTimer: (fn, ms) => {
      expect(timer).toBeUndefined();
      timer = { fn, at: now + ms };
    },
    setImmediate: (fn) => void immediates.push(fn),
    commit: (i, due) => {
      started.push({ i, due, at: now });
      return new Promise<void>((resolve) => ends.set(`${i}@${due}`, resolve));
    },
  });
  const settle = async () => {
    for (let k = 0; k < 5; k++) {
      await Promise.resolve();
      for (const fn of immediates.splice(0)) fn();
    }
  };
  return {
    schedule,
    started,
    get timerAt() {
      return timer?.at;
    },
    /** Advances the clock to `t` and fires the timer if it is due. */
    async advance(t: number) {
      now = t;
      if (timer !== undefined && timer.at <= now) {
        const { fn } = timer;
        timer = undefined;
        fn();
      }
      await settle();
    },
    async end(i: number, due: number) {
      ends.get(`${i}@${due}`)?.();
      ends.delete(`${i}@${due}`);
      await settle();
    },
  };
}

describe('commit schedule', () => {
  it('spreads phases evenly, or rounds them down to slots', () => {
    expect([0, 1, 2, 3].map((g) => commitPhaseMs(g, 4, 100, 0))).toEqual([0, 25, 50, 75]);
    expect([0, 1, 2, 3].map((g) => commitPhaseMs(g, 4, 100, 40))).toEqual([0, 0, 40, 40]);
  });

  it('rejects phases out of order or outside the period', () => {
    const o = { periodMs: 10, t0: 0, nowMs: () => 0, setTimer() {}, setImmediate() {} };
    const commit = () => Promise.resolve();
    expect(() => new CommitSchedule({ ...o, commit, phasesMs: [5, 1] })).toThrow(/ascending/);
    expect(() => new CommitSchedule({ ...o, commit, phasesMs: [10] })).toThrow(/within/);
  });

  it('starts every commit due by the wake-up, in due order, on one timer', async () => {
    const h = harness([0, 0, 25, 50], 100);
    await h.advance(99.5);
    // Rounded up to whole ms: never before the due time.
    h.schedule.start();
    expect(h.started).toEqual([]);
    expect(h.timerAt).toBe(100.5);
    await h.advance(130);
    expect(h.started.map((s) => [s.i, s.due])).toEqual([
      [0, 100],
      [1, 100],
      [2, 125],
    ]);
    expect(h.timerAt).toBe(150);
    for (const s of h.started) await h.end(s.i, s.due);
    await h.advance(150);
    expect(h.started.at(-1)).toMatchObject({ i: 3, due: 150, at: 150 });
    expect(h.timerAt).toBe(200);
  });

  it('makes a late commit after the shard’s previous one, with its own due time, never skipping', async () => {
    const h = harness([0], 10);
    h.schedule.start();
    await h.advance(100);
    expect(h.started.map((s) => s.due)).toEqual([100]);
    // Two more periods pass while the first commit is in flight.
    await h.advance(110);
    await h.advance(120);
    expect(h.started).toHaveLength(1);
    await h.end(0, 100);
    expect(h.started.map((s) => [s.due, s.at])).toEqual([
      [100, 100],
      [110, 120],
    ]);
    await h.end(0, 110);
    await h.end(0, 120);
    expect(h.started.map((s) => s.due)).toEqual([100, 110, 120]);
  });

  it('stops starting commits and resolves once those in flight end', async () => {
    const h = harness([0, 5], 10);
    h.schedule.start();
    await h.advance(101);
    let stopped = false;
    const stop = h.schedule.stop().then(() => {
      stopped = true;
    });
    await h.advance(120);
    expect(h.started).toHaveLength(1);
    expect(stopped).toBe(false);
    await h.end(0, 100);
    await stop;
    expect(stopped).toBe(true);
  });
});
