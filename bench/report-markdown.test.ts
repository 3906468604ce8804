import { describe, expect, it } from 'vitest';
import type { E2ePhase, E2eResult } from './e2e.js';
import type { FanoutResult, FanoutStep } from './fanout-nats.js';
import type { FloorResult } from './floor.js';
import type { FloorRow } from './floor-shape.js';
import { fanoutTargetRows, floorSection, targetRows } from './report-markdown.js';

const lat = { p50Ms: 0.2, p90Ms: 0.5, p99Ms: 2, p999Ms: 9, maxMs: 12 };

/** A pubsub phase: 15 s at 1,500 commits/s, each observed twice. */
function phase(
  consensus: 'sqlite' | 'postgres',
  cpu: { readers: number; writers: number; broker: number },
) {
  const observations = 1500 * 15 * 2;
  return {
    consensus,
    mode: 'pubsub',
    measureSeconds: 15,
    commitsPerSecond: 1500,
    observedPerSecond: 3000,
    commitToObserved: lat,
    scheduledToObserved: lat,
    readsPerSecond: { readers: 0, writers: 0 },
    cpuSeconds: { ...cpu, postgresReaders: null, postgresWriters: null, postgresAll: null },
    cpuUsPerObserved: {
      readers: (cpu.readers * 1e6) / observations,
      writers: (cpu.writers * 1e6) / observations,
      broker: (cpu.broker * 1e6) / observations,
      postgresReaders: null,
      postgresWriters: null,
      postgresAll: null,
      readPath: ((cpu.readers + cpu.broker) * 1e6) / observations,
      allProcesses: ((cpu.readers + cpu.broker + cpu.writers) * 1e6) / observations,
    },
  } as unknown as E2ePhase;
}

const row = (role: FloorRow['role'], cpuUsPerEvent: number, label = role): FloorRow => ({
  role,
  label,
  processes: role === 'relay' ? 1 : 2,
  event: 'event',
  events: 1000,
  eventsPerSecond: 1500,
  cpuUsPerEvent,
  userUsPerEvent: cpuUsPerEvent / 2,
  systemUsPerEvent: cpuUsPerEvent / 2,
  voluntarySwitchesPerEvent: 1,
  involuntarySwitchesPerEvent: 0.1,
  eventsPerWakeup: role === 'writer' ? 1 : null,
  targetUs: 8,
  cpuPercent: 10,
});

function floor(layout: 'interleaved' | 'e2e', writerUs: number): FloorResult {
  return {
    kind: 'floor',
    startedAt: '2026-12-01T00:00:00.000Z',
    quick: false,
    loadAverageBefore: '1 1 1',
    loadAverageAfter: '1 1 1',
    host: undefined,
    config: {
      shards: 1000,
      ratePerShard: 1.5,
      writers: 2,
      readers: 2,
      layout,
      perWakeup: 1,
      frameBytes: 500,
      sqliteSynchronous: 'normal',
      variants: ['a', 'c'],
      warmupMs: 3000,
      measureMs: 20000,
    },
    rows: [row('writer', 30), row('writer', writerUs), row('relay', 24), row('reader', 16.5)],
  };
}

describe('report: the per-event CPU targets', () => {
  // sqlite: readers 1.35 s over 45,000 observations = 30 µs, writers 3.6 s over 22,500 commits =
  // 160 µs per commit, broker 0.27 s = 6 µs per delivery.
  const e2e = {
    phases: [phase('sqlite', { readers: 1.35, writers: 3.6, broker: 0.27 })],
  } as unknown as E2eResult;

  it('sets readers, writers (per commit) and broker against their targets', () => {
    const rows = targetRows(e2e, undefined);
    expect(rows).toContain(
      '| readers ≤ 20 µs CPU per observed update with pubsub (sqlite) | 30 µs | **missed** (1.5× the target) |',
    );
    expect(rows).toContain(
      "| writers ≤ 80 µs CPU per commit with pubsub (sqlite, the writer processes' whole CPU) | 160 µs | **missed** (2× the target) |",
    );
    expect(rows).toContain(
      '| broker ≤ 8 µs CPU per delivery (sqlite; one delivery per observed update) | 6 µs | **met** |',
    );
  });

  it("names the floors beside them: the last writer variant, both layouts' figures", () => {
    const rows = targetRows(e2e, undefined, [floor('interleaved', 127.5), floor('e2e', 90)]);
    expect(rows.find((r) => r.startsWith('| writers'))).toContain(
      '160 µs (floor, timer wake-up + SQLite CAS + 500 B write: 128 µs at one event per wake-up, 90 µs at e2e',
    );
    expect(rows.find((r) => r.startsWith('| readers'))).toContain(
      '(floor, a bare `net` reader: 16.5 µs at one event per wake-up, 16.5 µs at e2e',
    );
    expect(rows.find((r) => r.startsWith('| broker'))).toContain('24 µs at one event per wake-up');
  });

  it('a Postgres writer is held to 100 µs and gets no SQLite floor', () => {
    const pg = {
      phases: [phase('postgres', { readers: 1.35, writers: 2.25, broker: 0.27 })],
    } as unknown as E2eResult;
    const w = targetRows(pg, undefined, [floor('interleaved', 127.5), undefined]).find((r) =>
      r.startsWith('| writers'),
    );
    expect(w).toBe(
      "| writers ≤ 100 µs CPU per commit with pubsub (postgres, the writer processes' whole CPU) | 100 µs | **met** |",
    );
  });
});

describe('report: the floor section', () => {
  it('titles a variant and prints one table line per row', () => {
    const lines = floorSection(floor('e2e', 90), 'layout-e2e');
    expect(lines[0]).toBe('## Floors, variant `layout-e2e` (`npm run bench -- floor`)');
    expect(lines.join('\n')).toContain("e2e's layout: each writer a consecutive slice");
    expect(
      lines.filter(
        (l) => l.startsWith('| writer') || l.startsWith('| relay') || l.startsWith('| reader'),
      ),
    ).toHaveLength(4);
  });
});

describe('report: fan-out against nats-server (issue 14 item 3)', () => {
  const step = (system: 'ours' | 'nats', rate: number, cpu: number, p99Ms = 2): FanoutStep =>
    ({
      system,
      fanout: 1,
      offeredPerSecond: rate,
      deliveredPerSecond: rate,
      deliveredRatio: 1,
      p99Ms,
      serverCpuSecondsPerMillion: cpu,
    }) as FanoutStep;
  const result = (steps: FanoutStep[]) =>
    ({
      config: { p99BoundMs: 10, minDeliveredRatio: 0.99 },
      steps,
      best: [
        { system: 'ours', fanout: 1, deliveredPerSecond: 40000, p99Ms: 2, capped: false },
        { system: 'nats', fanout: 1, deliveredPerSecond: 80000, p99Ms: 2, capped: false },
      ],
      ratios: [{ fanout: 1, ratio: 0.5 }],
    }) as unknown as FanoutResult;

  it('compares CPU only at rates both passed, the first try of each', () => {
    const rows = fanoutTargetRows(
      result([
        step('ours', 20000, 5),
        step('nats', 20000, 6),
        step('ours', 40000, 3),
        step('ours', 40000, 9),
        step('nats', 40000, 4),
        // ours failed the bound here: not compared
        step('ours', 80000, 9, 30),
        step('nats', 80000, 2),
      ]),
    );
    expect(rows[0]).toContain('= 0.5× | **met** |');
    expect(rows[1]).toContain('ours ≤ nats-server at 2 of 2 rates both passed');
    expect(rows[1]).toContain('**met**');
  });

  it('names every rate where ours costs more', () => {
    const rows = fanoutTargetRows(
      result([
        step('ours', 20000, 7),
        step('nats', 20000, 6),
        step('ours', 40000, 3),
        step('nats', 40000, 4),
      ]),
    );
    expect(rows[1]).toContain(
      'ours ≤ nats-server at 1 of 2 rates both passed; highest ratio 7 vs 6 at 20,000/s',
    );
    expect(rows[1]).toContain('**missed** (above at 20,000/s)');
  });
});
