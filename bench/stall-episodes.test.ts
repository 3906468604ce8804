import { describe, expect, it } from 'vitest';
import { episodeLines, findEpisodes, stallSummaryLines } from './stall-episodes.js';
import type { StallLog } from './stall-log.js';

const T = 1_700_000_000_000;

function logOf(name: string, stalls: StallLog['stalls'], gcs: StallLog['gcs'] = []): StallLog {
  const zero = { count: 0, pauseMs: 0 };
  return {
    name,
    pid: 1,
    intervalMs: 10,
    thresholdMs: 10,
    ticks: 100,
    stalls,
    gcs,
    gcTotals: {
      scavenge: { count: 3, pauseMs: 4 },
      'mark-compact': zero,
      incremental: zero,
      'weak-callbacks': zero,
      other: zero,
    },
    dropped: 0,
  };
}

describe('findEpisodes', () => {
  it('merges overlapping slow pairs into one episode and puts beside it what overlaps it', () => {
    const slow = [
      { reader: 'reader-0', writer: 'writer-1', committedAt: T + 1000, observedAt: T + 1170 },
      { reader: 'reader-1', writer: 'writer-1', committedAt: T + 1005, observedAt: T + 1172 },
      // Far away: its own episode.
      { reader: 'reader-1', writer: 'writer-0', committedAt: T + 5000, observedAt: T + 5030 },
    ];
    const logs = [
      logOf(
        'writer-1',
        [
          { atMs: T + 995, gapMs: 165, onCpuMs: 3, runQueueMs: 2 },
          { atMs: T + 3000, gapMs: 50, onCpuMs: 1, runQueueMs: 49 },
        ],
        [{ atMs: T + 1100, durationMs: 6, kind: 'scavenge' }],
      ),
      logOf('reader-0', []),
    ];
    const updates = [{ writer: 'writer-1', startAt: T + 1002, doneAt: T + 1168 }];
    const episodes = findEpisodes(slow, logs, updates);
    expect(episodes).toHaveLength(2);
    const [e] = episodes;
    expect(e).toMatchObject({
      fromMs: T + 1000,
      toMs: T + 1172,
      slowPairs: 2,
      worstMs: 170,
      byReader: { 'reader-0': 1, 'reader-1': 1 },
      byWriter: { 'writer-1': 2 },
      slowUpdates: updates,
    });
    expect(e?.stalls.map((s) => [s.process, s.gapMs])).toEqual([['writer-1', 165]]);
    expect(e?.gcs.map((g) => [g.process, g.kind])).toEqual([['writer-1', 'scavenge']]);
    expect(episodes[1]?.stalls).toEqual([]);
  });

  it('prints the worst episodes in time order and a line per process', () => {
    const slow = [
      { reader: 'reader-0', writer: 'writer-0', committedAt: T + 100, observedAt: T + 130 },
      { reader: 'reader-0', writer: 'writer-0', committedAt: T + 900, observedAt: T + 1100 },
    ];
    const logs = [logOf('writer-0', [{ atMs: T + 890, gapMs: 200, onCpuMs: 2, runQueueMs: 1 }])];
    const lines = episodeLines(findEpisodes(slow, logs, []), T, 1);
    expect(lines[0]).toMatch(/^- at 0\.900 s–1\.100 s: 1 slow pairs, worst 200\.0 ms/);
    expect(lines[1]).toBe('  - stalls writer-0: at 0.890 s 200 ms (cpu 2, runq 1)');
    expect(lines).toHaveLength(2);
    const summary = stallSummaryLines(logs);
    expect(summary[0]).toMatch(/writer-0 .* 1 \/ 1 \/ 1 \/ 1; longest 200 ms .*scavenge 3/);
  });
});
