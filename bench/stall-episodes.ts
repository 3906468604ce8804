/**
 * The parent's side of `bench e2e --stall-log`: groups the slow (commit → observed) pairs of a
 * phase into episodes and puts beside each what every process recorded about itself at that
 * time (`stall-log.ts`: event-loop stalls, with the main thread's CPU and run-queue time; GC
 * pauses) and the writers' slow compare-and-sets, so that a tail can be pinned on one process
 * and one cause. Which readers saw an episode and whose commits it delayed say where it sits:
 * one reader late for every writer's commits is that reader; every reader late for one writer's
 * commits is that writer (or its pushes); every reader and every writer is the broker or the
 * whole machine.
 */
import type { GcRecord, StallLog, StallRecord } from './stall-log.js';

/** One slow (reader, commit) pair. */
export interface SlowObservation {
  reader: string;
  writer: string;
  /** When the writer's compare-and-set ended (wall ms). */
  committedAt: number;
  observedAt: number;
}

/** One writer update that took long (compare-and-set included). */
export interface SlowUpdate {
  writer: string;
  startAt: number;
  doneAt: number;
}

export interface StallEpisode {
  /** Earliest commit of the episode's slow pairs (wall ms). */
  fromMs: number;
  /** Latest observation of the episode's slow pairs (wall ms). */
  toMs: number;
  slowPairs: number;
  worstMs: number;
  /** Slow pairs by reader, and by the writer whose commit it was. */
  byReader: Record<string, number>;
  byWriter: Record<string, number>;
  /** Every process's stalls and GC pauses that overlap the episode (±`slackMs`). */
  stalls: (StallRecord & { process: string })[];
  gcs: (GcRecord & { process: string })[];
  slowUpdates: SlowUpdate[];
}

/** How the processes' pairs [committed, observed] merge: overlapping within `slackMs`. */
export function findEpisodes(
  slow: readonly SlowObservation[],
  logs: readonly StallLog[],
  slowUpdates: readonly SlowUpdate[],
  slackMs = 20,
): StallEpisode[] {
  const sorted = [...slow].sort((a, b) => a.committedAt - b.committedAt);
  const episodes: StallEpisode[] = [];
  let cur: StallEpisode | undefined;
  for (const s of sorted) {
    if (cur === undefined || s.committedAt > cur.toMs + slackMs) {
      cur = {
        fromMs: s.committedAt,
        toMs: s.observedAt,
        slowPairs: 0,
        worstMs: 0,
        byReader: {},
        byWriter: {},
        stalls: [],
        gcs: [],
        slowUpdates: [],
      };
      episodes.push(cur);
    }
    cur.toMs = Math.max(cur.toMs, s.observedAt);
    cur.slowPairs++;
    cur.worstMs = Math.max(cur.worstMs, s.observedAt - s.committedAt);
    cur.byReader[s.reader] = (cur.byReader[s.reader] ?? 0) + 1;
    cur.byWriter[s.writer] = (cur.byWriter[s.writer] ?? 0) + 1;
  }
  for (const e of episodes) {
    const lo = e.fromMs - slackMs;
    const hi = e.toMs + slackMs;
    for (const l of logs) {
      for (const st of l.stalls) {
        // A stall spans [atMs, atMs + interval + gap].
        if (st.atMs <= hi && st.atMs + l.intervalMs + st.gapMs >= lo) {
          e.stalls.push({ ...st, process: l.name });
        }
      }
      for (const g of l.gcs) {
        if (g.atMs <= hi && g.atMs + g.durationMs >= lo) e.gcs.push({ ...g, process: l.name });
      }
    }
    for (const u of slowUpdates) if (u.startAt <= hi && u.doneAt >= lo) e.slowUpdates.push(u);
  }
  return episodes;
}

/** Per process: its stalls by size, its longest, its GC totals. */
export function stallSummaryLines(logs: readonly StallLog[]): string[] {
  const out: string[] = [];
  for (const l of logs) {
    const by = (ms: number) => l.stalls.filter((s) => s.gapMs >= ms).length;
    const top = [...l.stalls].sort((a, b) => b.gapMs - a.gapMs).slice(0, 3);
    const gc = Object.entries(l.gcTotals)
      .filter(([, v]) => v.count > 0)
      .map(([k, v]) => `${k} ${v.count} (${v.pauseMs.toFixed(0)} ms)`)
      .join(', ');
    const longestGc = l.gcs.reduce((m, g) => Math.max(m, g.durationMs), 0);
    out.push(
      `- ${l.name} (pid ${l.pid}): stalls ≥ ${l.thresholdMs} / 20 / 50 / 100 ms: ${by(l.thresholdMs)} / ${by(20)} / ${by(50)} / ${by(100)}; longest ${top.map(describeStall).join(', ') || '–'}; GC ${gc || 'none'}, longest pause ${longestGc.toFixed(1)} ms${l.dropped > 0 ? `; ${l.dropped} records not kept` : ''}`,
    );
  }
  return out;
}

function describeStall(s: StallRecord): string {
  const parts =
    s.onCpuMs === null ? '' : ` (cpu ${s.onCpuMs.toFixed(0)}, runq ${s.runQueueMs?.toFixed(0)})`;
  return `${s.gapMs.toFixed(0)} ms${parts}`;
}

/** The episodes, worst first (at most `limit`), with times relative to `originMs`. */
export function episodeLines(
  episodes: readonly StallEpisode[],
  originMs: number,
  limit = 10,
  stallsPerProcess = 3,
): string[] {
  const rel = (ms: number) => `${((ms - originMs) / 1000).toFixed(3)} s`;
  const counts = (r: Record<string, number>) =>
    Object.entries(r)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  const out: string[] = [];
  const worst = [...episodes].sort((a, b) => b.worstMs - a.worstMs).slice(0, limit);
  for (const e of worst.sort((a, b) => a.fromMs - b.fromMs)) {
    out.push(
      `- at ${rel(e.fromMs)}–${rel(e.toMs)}: ${e.slowPairs} slow pairs, worst ${e.worstMs.toFixed(1)} ms; readers: ${counts(e.byReader)}; writers: ${counts(e.byWriter)}`,
    );
    // Per process its longest stalls in the episode (the rest counted).
    const processes = [...new Set(e.stalls.map((x) => x.process))].sort();
    for (const p of processes) {
      const mine = e.stalls.filter((x) => x.process === p).sort((a, b) => b.gapMs - a.gapMs);
      const shown = mine.slice(0, stallsPerProcess).sort((a, b) => a.atMs - b.atMs);
      const more = mine.length - shown.length;
      out.push(
        `  - stalls ${p}: ${shown.map((x) => `at ${rel(x.atMs)} ${describeStall(x)}`).join('; ')}${more > 0 ? `; ${more} shorter` : ''}`,
      );
    }
    for (const g of e.gcs) {
      out.push(`  - gc ${g.process} at ${rel(g.atMs)}: ${g.kind} ${g.durationMs.toFixed(1)} ms`);
    }
    const updates = e.slowUpdates.slice(0, 5);
    for (const u of updates) {
      out.push(
        `  - update ${u.writer} at ${rel(u.startAt)}: ${(u.doneAt - u.startAt).toFixed(1)} ms`,
      );
    }
    if (e.slowUpdates.length > updates.length) {
      out.push(`  - (${e.slowUpdates.length - updates.length} more slow updates)`);
    }
  }
  return out;
}
