import { constants } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { gcKindOf, StallDetector, type StallProbe, startStallLog } from './stall-log.js';

/** A probe driven by the test: monotonic and wall time move together, schedstat by hand. */
function fakeProbe(): StallProbe & { advance(ms: number, cpuMs?: number, waitMs?: number): void } {
  let mono = 1000;
  let cpuNs = 0;
  let waitNs = 0;
  return {
    monotonicMs: () => mono,
    wallMs: () => 1_700_000_000_000 + mono,
    schedNs: () => [cpuNs, waitNs],
    advance(ms, cpuMs = 0, waitMs = 0) {
      mono += ms;
      cpuNs += cpuMs * 1e6;
      waitNs += waitMs * 1e6;
    },
  };
}

describe('StallDetector', () => {
  it('records a tick later than the threshold, with the thread CPU and run-queue time of the gap', () => {
    const probe = fakeProbe();
    const d = new StallDetector(probe, { intervalMs: 10, thresholdMs: 10 });
    probe.advance(10, 1);
    d.tick(); // on time
    probe.advance(19, 2); // 9 ms late: under the threshold
    d.tick();
    probe.advance(160, 5, 15); // 150 ms late: 5 ms on a CPU, 15 ms runnable, the rest blocked
    d.tick();
    const log = d.log('writer-0', 42);
    expect(log.ticks).toBe(3);
    expect(log.stalls).toEqual([
      { atMs: 1_700_000_000_000 + 1029, gapMs: 150, onCpuMs: 5, runQueueMs: 15 },
    ]);
    expect(log).toMatchObject({ name: 'writer-0', pid: 42, intervalMs: 10, thresholdMs: 10 });
  });

  it('reports null thread figures where schedstat is not readable', () => {
    const probe = { ...fakeProbe(), schedNs: () => null };
    let mono = 0;
    probe.monotonicMs = () => mono;
    const d = new StallDetector(probe, { intervalMs: 10 });
    mono = 60;
    d.tick();
    expect(d.log('r', 1).stalls[0]).toMatchObject({ gapMs: 50, onCpuMs: null, runQueueMs: null });
  });

  it('keeps GC pauses over the threshold and every mark-compact, and totals all of them', () => {
    const d = new StallDetector(fakeProbe(), { gcThresholdMs: 5 });
    d.gc('scavenge', 100, 1.5);
    d.gc('scavenge', 200, 7);
    d.gc('mark-compact', 300, 2);
    const log = d.log('broker', 1);
    expect(log.gcs).toEqual([
      { atMs: 200, durationMs: 7, kind: 'scavenge' },
      { atMs: 300, durationMs: 2, kind: 'mark-compact' },
    ]);
    expect(log.gcTotals.scavenge).toEqual({ count: 2, pauseMs: 8.5 });
    expect(log.gcTotals['mark-compact']).toEqual({ count: 1, pauseMs: 2 });
  });

  it('keeps at most maxRecords and counts the rest', () => {
    const probe = fakeProbe();
    const d = new StallDetector(probe, { intervalMs: 10, maxRecords: 2 });
    for (let i = 0; i < 3; i++) {
      probe.advance(50);
      d.tick();
    }
    d.gc('mark-compact', 1, 1);
    d.gc('mark-compact', 2, 1);
    d.gc('mark-compact', 3, 1);
    const log = d.log('w', 1);
    expect(log.stalls).toHaveLength(2);
    expect(log.gcs).toHaveLength(2);
    expect(log.dropped).toBe(2);
  });

  it('refuses a bad option by name', () => {
    expect(() => new StallDetector(fakeProbe(), { intervalMs: 0 })).toThrow(/intervalMs/);
    expect(() => new StallDetector(fakeProbe(), { thresholdMs: Number.NaN })).toThrow(
      /thresholdMs/,
    );
  });

  it('names the V8 GC kinds', () => {
    expect(gcKindOf(constants.NODE_PERFORMANCE_GC_MINOR)).toBe('scavenge');
    expect(gcKindOf(constants.NODE_PERFORMANCE_GC_MAJOR)).toBe('mark-compact');
    expect(gcKindOf(constants.NODE_PERFORMANCE_GC_INCREMENTAL)).toBe('incremental');
    expect(gcKindOf(constants.NODE_PERFORMANCE_GC_WEAKCB)).toBe('weak-callbacks');
    expect(gcKindOf(-1)).toBe('other');
  });
});

describe('startStallLog', () => {
  it('starts and stops in this process (the timer is unref’d, stop is idempotent)', () => {
    const running = startStallLog({ name: 'test' });
    const log = running.log();
    expect(log).toMatchObject({ name: 'test', pid: process.pid, stalls: [], dropped: 0 });
    running.stop();
    running.stop();
  });
});
