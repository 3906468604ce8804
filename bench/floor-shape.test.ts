/**
 * The pure parts of `bench floor` (`bench/floor-shape.ts`): the writers' shards and phases
 * (driven through the e2e `CommitSchedule` with a fake clock: K events per wake-up at the same
 * rate) and the per-event figures of a row.
 */
import { describe, expect, it } from 'vitest';
import { CommitSchedule } from './commit-schedule.js';
import {
  behindNote,
  type FloorLayout,
  floorResultFile,
  floorRow,
  floorTableLine,
  type ProcSample,
  writerPhasesMs,
  writerShards,
} from './floor-shape.js';

const PERIOD_MS = 1000 / 1.5;

describe('writerShards', () => {
  it.each<FloorLayout>(['interleaved', 'e2e'])(
    'splits the shards between the writers (%s)',
    (layout) => {
      const a = writerShards({ writer: 0, writers: 2, shards: 1000, layout });
      const b = writerShards({ writer: 1, writers: 2, shards: 1000, layout });
      expect(a).toHaveLength(500);
      expect(b).toHaveLength(500);
      expect(new Set([...a, ...b]).size).toBe(1000);
    },
  );

  it('interleaves, or slices as bench e2e does', () => {
    expect(writerShards({ writer: 1, writers: 2, shards: 6, layout: 'interleaved' })).toEqual([
      1, 3, 5,
    ]);
    expect(writerShards({ writer: 1, writers: 2, shards: 6, layout: 'e2e' })).toEqual([3, 4, 5]);
  });
});

describe('writerPhasesMs', () => {
  const phases = (writer: number, layout: FloorLayout, perWakeup: number) =>
    writerPhasesMs({ writer, writers: 2, shards: 1000, periodMs: PERIOD_MS, layout, perWakeup });

  it('spreads an interleaved writer evenly over the whole period', () => {
    const p = phases(1, 'interleaved', 1);
    expect(p[0]).toBeCloseTo(PERIOD_MS / 1000);
    for (let i = 1; i < p.length; i++) expect(p[i]! - p[i - 1]!).toBeCloseTo(PERIOD_MS / 500);
  });

  it('puts an e2e-layout writer in its half of the period', () => {
    const p = phases(1, 'e2e', 1);
    expect(p[0]).toBeCloseTo(PERIOD_MS / 2);
    expect(p.at(-1)).toBeLessThan(PERIOD_MS);
  });

  it('gives each group of K shards the phase of its first', () => {
    const p = phases(0, 'interleaved', 4);
    expect(p.slice(0, 8)).toEqual([0, 0, 0, 0, 8, 8, 8, 8].map((g) => (g / 1000) * PERIOD_MS));
    expect(new Set(p).size).toBe(125);
  });

  /** Runs one writer's schedule for `periods` periods with timers that fire when asked. */
  async function simulate(
    perWakeup: number,
    periods: number,
  ): Promise<{ events: number; wakeups: number }> {
    let now = 0;
    let timer: { fn: () => void; at: number } | undefined;
    let events = 0;
    let wakeups = 0;
    const schedule = new CommitSchedule({
      phasesMs: phases(0, 'interleaved', perWakeup),
      periodMs: PERIOD_MS,
      t0: 0,
      nowMs: () => now,
      setTimer: (fn, ms) => {
        timer = { fn, at: now + ms };
      },
      setImmediate: (fn) => fn(),
      commit: () => {
        events++;
        return Promise.resolve();
      },
    });
    schedule.start();
    for (let k = 0; k < 3; k++) await Promise.resolve();
    while (timer !== undefined && timer.at < periods * PERIOD_MS) {
      const t = timer;
      timer = undefined;
      now = t.at;
      wakeups++;
      t.fn();
      // Each commit ends in a microtask (its shard is free again for the next period).
      for (let k = 0; k < 3; k++) await Promise.resolve();
    }
    return { events, wakeups };
  }

  it.each([1, 4, 16])('makes K events per wake-up at the same rate (K = %i)', async (k) => {
    const { events, wakeups } = await simulate(k, 3);
    // 500 shards × 3 periods, one wake-up per group of K (the last group of 16 has 4 shards;
    // the first group is made by `start`, not by a wake-up).
    expect(events).toBe(1500);
    expect(wakeups).toBe(Math.ceil(500 / k) * 3 - 1);
  });
});

describe('floorRow', () => {
  const s = (userSeconds: number, systemSeconds: number, voluntary: number): ProcSample => ({
    userSeconds,
    systemSeconds,
    voluntary,
    involuntary: voluntary / 10,
  });

  it('sums the processes of the row and divides by the events', () => {
    const r = floorRow({
      role: 'writer',
      label: 'writer (a)',
      event: 'commit',
      before: [s(1, 0.5, 100), s(2, 1, 200)],
      after: [s(1.3, 0.6, 1100), s(2.2, 1.1, 1200)],
      events: 10_000,
      wakeups: 5_000,
      seconds: 5,
      targetUs: 80,
    });
    expect(r.processes).toBe(2);
    expect(r.eventsPerSecond).toBe(2000);
    expect(r.userUsPerEvent).toBeCloseTo(50);
    expect(r.systemUsPerEvent).toBeCloseTo(20);
    expect(r.cpuUsPerEvent).toBeCloseTo(70);
    expect(r.voluntarySwitchesPerEvent).toBeCloseTo(0.2);
    expect(r.involuntarySwitchesPerEvent).toBeCloseTo(0.02);
    expect(r.eventsPerWakeup).toBe(2);
    expect(r.cpuPercent).toBeCloseTo(14);
    expect(floorTableLine(r)).toBe(
      '| writer (a) | 2 | commit | 2000 | **70.0** | 50.0 / 20.0 | 80 | 0.20 / 0.02 | 2.00 | 14.0% |',
    );
  });

  it('has no wake-ups but for writers, and survives a window with no event', () => {
    const r = floorRow({
      role: 'reader',
      label: 'reader',
      event: 'frame read',
      before: [s(1, 1, 0)],
      after: [s(1, 1, 0)],
      events: 0,
      seconds: 1,
      targetUs: 20,
    });
    expect(r.eventsPerWakeup).toBeNull();
    expect(r.cpuUsPerEvent).toBe(0);
  });

  it('refuses samples of different process sets', () => {
    expect(() =>
      floorRow({
        role: 'relay',
        label: 'relay',
        event: 'delivery',
        before: [],
        after: [s(1, 1, 1)],
        events: 1,
        seconds: 1,
        targetUs: 8,
      }),
    ).toThrow();
  });
});

describe('floorResultFile', () => {
  it('names the default run floor and the others by their settings', () => {
    expect(floorResultFile({ perWakeup: 1, layout: 'interleaved' })).toBe('floor');
    expect(floorResultFile({ perWakeup: 16, layout: 'interleaved' })).toBe('floor-per-wakeup-16');
    expect(floorResultFile({ perWakeup: 4, layout: 'e2e' })).toBe('floor-per-wakeup-4-layout-e2e');
  });
});

describe('behindNote', () => {
  const row = (role: 'writer' | 'relay' | 'reader', events: number) =>
    floorRow({
      role,
      label: role,
      event: 'e',
      before: [],
      after: [],
      events,
      seconds: 1,
      targetUs: 1,
    });

  it('is silent while the relay and the readers keep up', () => {
    expect(behindNote([row('writer', 1000), row('relay', 1990), row('reader', 1960)], 2)).toBe(
      undefined,
    );
    // Variants without a relay have nothing to fall behind.
    expect(behindNote([row('writer', 1000)], 2)).toBeUndefined();
  });

  it('says so when the relay or the readers fell behind', () => {
    expect(behindNote([row('writer', 1000), row('relay', 1900), row('reader', 1900)], 2)).toBe(
      '1000 commits, 1900 deliveries, 1900 frames read: behind',
    );
    expect(behindNote([row('writer', 1000), row('relay', 2000), row('reader', 1900)], 2)).toContain(
      'behind',
    );
  });
});
