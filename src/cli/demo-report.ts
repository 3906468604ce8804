/**
 * The demo's figures: live rows (one a second) and the closing summary per phase. Latency is
 * commit → applied in a reader, one sample per commit per reader. In the summary a sample
 * belongs to the phase its commit was made in; commits in the `settleMs` after a switch are
 * counted as "switching" (connections go down or come back then, so they mix both paths).
 */

/** Nearest-rank percentile of ascending `sorted`; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i] as number;
}

export type PhaseName = 'pubsub on' | 'pubsub off' | 'pubsub on again' | 'switching';
export const PHASES: readonly PhaseName[] = ['pubsub on', 'pubsub off', 'pubsub on again'];

/** When pubsub was switched, in wall ms (undefined: not (yet) switched). */
export interface Switches {
  offAtMs?: number | undefined;
  onAtMs?: number | undefined;
}

export function phaseAt(tMs: number, s: Switches, settleMs: number): PhaseName {
  if (s.offAtMs === undefined || tMs < s.offAtMs) return 'pubsub on';
  if (tMs < s.offAtMs + settleMs) return 'switching';
  if (s.onAtMs === undefined || tMs < s.onAtMs) return 'pubsub off';
  if (tMs < s.onAtMs + settleMs) return 'switching';
  return 'pubsub on again';
}

/** One second of the live table. */
export interface Row {
  /** Seconds since the start. */
  t: number;
  /** What pubsub is set to during this row. */
  pubsub: 'on' | 'off';
  updatesPerS: number;
  /** A writer's update (compare-and-set included), p50. */
  updateP50Ms: number;
  p50Ms: number;
  p99Ms: number;
  readsPerS: number;
  pollsPerS: number;
  /** Cumulative: diffs the broker did not deliver plus pushes clients dropped. */
  drops: number;
  /** Cumulative. */
  errors: number;
  /** Readers whose pubsub stream is connected. */
  readersConnected: number;
}

const ms = (v: number) => (Number.isNaN(v) ? '-' : v < 10 ? v.toFixed(2) : v.toFixed(0));
const pad = (s: string | number, w: number) => String(s).padStart(w);

export const ROW_HEADER =
  '   t s  pubsub   updates/s  commit ms   p50 ms   p99 ms   reads/s   polls/s   drops   errors   readers connected';

export function formatRow(r: Row, readers: number): string {
  return [
    pad(r.t.toFixed(0), 6),
    pad(r.pubsub, 7),
    pad(r.updatesPerS.toFixed(0), 11),
    pad(ms(r.updateP50Ms), 10),
    pad(ms(r.p50Ms), 8),
    pad(ms(r.p99Ms), 8),
    pad(r.readsPerS.toFixed(0), 9),
    pad(r.pollsPerS.toFixed(0), 9),
    pad(r.drops, 7),
    pad(r.errors, 8),
    pad(`${r.readersConnected}/${readers}`, 19),
  ].join(' ');
}

/** Summary of one phase. */
export interface PhaseSummary {
  phase: PhaseName;
  samples: number;
  /** A writer's update (compare-and-set included), p50. */
  updateP50Ms: number;
  p50Ms: number;
  p99Ms: number;
  /** The readers' Consensus reads per second, over the rows of this phase. */
  readsPerS: number;
  /** The writers' Consensus reads per second (after a lost compare-and-set). */
  writerReadsPerS: number;
  /** Fallback polls per second by the readers. */
  pollsPerS: number;
}

export function summarizePhases(
  samples: readonly (readonly [number, number])[],
  updates: readonly (readonly [number, number])[],
  rows: readonly (Row & { endMs: number; reads: number; writerReads: number; polls: number })[],
  switches: Switches,
  settleMs: number,
): PhaseSummary[] {
  const out: PhaseSummary[] = [];
  for (const phase of [...PHASES, 'switching' as const]) {
    const of = (xs: readonly (readonly [number, number])[]) =>
      xs
        .filter(([t]) => phaseAt(t, switches, settleMs) === phase)
        .map(([, l]) => l)
        .sort((a, b) => a - b);
    const lat = of(samples);
    const upd = of(updates);
    // A row (1 s) belongs to a phase if it both starts and ends in it.
    const inPhase = rows.filter(
      (r) =>
        phaseAt(r.endMs, switches, settleMs) === phase &&
        phaseAt(r.endMs - 1000, switches, settleMs) === phase,
    );
    const secs = inPhase.length;
    const sum = (f: (r: (typeof rows)[number]) => number) => inPhase.reduce((a, r) => a + f(r), 0);
    if (lat.length === 0 && secs === 0) continue;
    out.push({
      phase,
      samples: lat.length,
      updateP50Ms: percentile(upd, 0.5),
      p50Ms: percentile(lat, 0.5),
      p99Ms: percentile(lat, 0.99),
      readsPerS: secs === 0 ? Number.NaN : sum((r) => r.reads) / secs,
      writerReadsPerS: secs === 0 ? Number.NaN : sum((r) => r.writerReads) / secs,
      pollsPerS: secs === 0 ? Number.NaN : sum((r) => r.polls) / secs,
    });
  }
  return out;
}

export const SUMMARY_HEADER =
  'phase                applied  commit ms   p50 ms   p99 ms   reads/s   polls/s   writer reads/s';

export function formatPhase(p: PhaseSummary): string {
  const rate = (v: number) => (Number.isNaN(v) ? '-' : v.toFixed(1));
  return [
    p.phase.padEnd(20),
    pad(p.samples, 7),
    pad(ms(p.updateP50Ms), 10),
    pad(ms(p.p50Ms), 8),
    pad(ms(p.p99Ms), 8),
    pad(rate(p.readsPerS), 9),
    pad(rate(p.pollsPerS), 9),
    pad(rate(p.writerReadsPerS), 16),
  ].join(' ');
}
