/**
 * The pure parts of `bench floor` (`bench/floor.ts`): which shards a writer process owns and
 * when each falls due (the e2e writers' schedule, `commit-schedule.ts`), and the per-event
 * figures of a floor from its processes' `/proc` counters before and after the window.
 */
import { commitPhaseMs } from './commit-schedule.js';

/**
 * How the shards are split between the writer processes.
 * - `interleaved`: writer w owns the shards g ≡ w (mod writers), so each writer's commits are
 *   spread evenly over the whole period (750/s each at the reference load, one every 1.33 ms).
 * - `e2e`: consecutive slices, as `bench e2e` gives them (writer w owns [w·n/W, (w+1)·n/W)); as
 *   the phases are g / shards of the period, each writer then commits at the full rate
 *   (1,500/s) in its share of the period and not at all in the rest.
 */
export type FloorLayout = 'interleaved' | 'e2e';

export interface WriterPhasesOptions {
  writer: number;
  writers: number;
  shards: number;
  periodMs: number;
  layout: FloorLayout;
  /** Events per timer wake-up: each group of this many of the writer's shards shares one phase. */
  perWakeup: number;
}

/** The global shard indices of one writer, in the order of their phases. */
export function writerShards(
  o: Pick<WriterPhasesOptions, 'writer' | 'writers' | 'shards' | 'layout'>,
): number[] {
  const out: number[] = [];
  if (o.layout === 'interleaved') {
    for (let g = o.writer; g < o.shards; g += o.writers) out.push(g);
  } else {
    const per = Math.ceil(o.shards / o.writers);
    for (let g = o.writer * per; g < Math.min(o.shards, (o.writer + 1) * per); g++) out.push(g);
  }
  return out;
}

/**
 * Each of the writer's shards' phase in ms within the period (ascending, for `CommitSchedule`):
 * the e2e phase of the shard (`commitPhaseMs`, no slot), or with `perWakeup` K > 1 the phase of
 * the first shard of its group of K, so K commits fall due at once, one wake-up for K events at
 * the same rate.
 */
export function writerPhasesMs(o: WriterPhasesOptions): number[] {
  const shards = writerShards(o);
  return shards.map((_, i) => {
    const first = shards[i - (i % o.perWakeup)] as number;
    return commitPhaseMs(first, o.shards, o.periodMs, 0);
  });
}

/** The results file's name: the kind, with a suffix for each setting off its default. */
export function floorResultFile(o: { perWakeup: number; layout: FloorLayout }): string {
  return [
    'floor',
    ...(o.perWakeup === 1 ? [] : [`per-wakeup-${o.perWakeup}`]),
    ...(o.layout === 'interleaved' ? [] : [`layout-${o.layout}`]),
  ].join('-');
}

/** One process's counters at one instant: CPU from `/proc/<pid>/stat`, switches of all threads. */
export interface ProcSample {
  userSeconds: number;
  systemSeconds: number;
  voluntary: number;
  involuntary: number;
}

export type FloorRole = 'writer' | 'relay' | 'reader';

/** One floor of the table: a set of like processes over the window. */
export interface FloorRow {
  role: FloorRole;
  /** What the processes did per event (e.g. `(b) wake-up + SQLite compare-and-set`). */
  label: string;
  processes: number;
  /** What an event is for this role (a commit, a delivery, a frame read). */
  event: string;
  events: number;
  eventsPerSecond: number;
  /** µs of CPU (utime + stime, all threads, all processes of the row) per event. */
  cpuUsPerEvent: number;
  userUsPerEvent: number;
  systemUsPerEvent: number;
  voluntarySwitchesPerEvent: number;
  involuntarySwitchesPerEvent: number;
  /** Writers: events per timer wake-up (counted in the writer); others: null. */
  eventsPerWakeup: number | null;
  /** The target for this role, µs per event. */
  targetUs: number;
  /** Share of one core the row's processes used together. */
  cpuPercent: number;
}

export interface FloorRowInput {
  role: FloorRole;
  label: string;
  event: string;
  /** Per process, the counters at the window's start and end. */
  before: readonly ProcSample[];
  after: readonly ProcSample[];
  /** Events in the window, all processes. */
  events: number;
  /** Writers: timer wake-ups in the window, all processes. */
  wakeups?: number | undefined;
  seconds: number;
  targetUs: number;
}

/** The per-event figures of a floor. */
export function floorRow(i: FloorRowInput): FloorRow {
  if (i.before.length !== i.after.length) throw new Error('one sample per process at each end');
  let user = 0;
  let system = 0;
  let voluntary = 0;
  let involuntary = 0;
  i.after.forEach((a, k) => {
    const b = i.before[k] as ProcSample;
    user += a.userSeconds - b.userSeconds;
    system += a.systemSeconds - b.systemSeconds;
    voluntary += a.voluntary - b.voluntary;
    involuntary += a.involuntary - b.involuntary;
  });
  const n = Math.max(1, i.events);
  const us = (seconds: number) => (seconds * 1e6) / n;
  return {
    role: i.role,
    label: i.label,
    processes: i.after.length,
    event: i.event,
    events: i.events,
    eventsPerSecond: i.events / i.seconds,
    cpuUsPerEvent: us(user + system),
    userUsPerEvent: us(user),
    systemUsPerEvent: us(system),
    voluntarySwitchesPerEvent: voluntary / n,
    involuntarySwitchesPerEvent: involuntary / n,
    eventsPerWakeup: i.wakeups === undefined ? null : i.events / Math.max(1, i.wakeups),
    targetUs: i.targetUs,
    cpuPercent: ((user + system) / i.seconds) * 100,
  };
}

/**
 * A variant's rows (writers, relay, readers) are per event only if the relay and the readers
 * kept up with the writers: a note saying they fell behind (more than 2 % short), or undefined.
 */
export function behindNote(rows: readonly FloorRow[], readers: number): string | undefined {
  const w = rows.find((r) => r.role === 'writer');
  const relay = rows.find((r) => r.role === 'relay');
  const reader = rows.find((r) => r.role === 'reader');
  if (w === undefined || relay === undefined || reader === undefined) return undefined;
  if (relay.events >= 0.98 * w.events * readers && reader.events >= 0.98 * relay.events) {
    return undefined;
  }
  return `${w.events} commits, ${relay.events} deliveries, ${reader.events} frames read: behind`;
}

export const FLOOR_TABLE_HEADER =
  '| floor | processes | event | events/s | CPU µs per event | user / system µs | target µs | voluntary / involuntary switches per event | events per wake-up | CPU (of one core) |\n' +
  '|---|---|---|---|---|---|---|---|---|---|';

/** A row of the printed table. */
export function floorTableLine(r: FloorRow): string {
  const f = (x: number, d = 1) => x.toFixed(d);
  return (
    `| ${r.label} | ${r.processes} | ${r.event} | ${Math.round(r.eventsPerSecond)} | ` +
    `**${f(r.cpuUsPerEvent)}** | ${f(r.userUsPerEvent)} / ${f(r.systemUsPerEvent)} | ${r.targetUs} | ` +
    `${f(r.voluntarySwitchesPerEvent, 2)} / ${f(r.involuntarySwitchesPerEvent, 2)} | ` +
    `${r.eventsPerWakeup === null ? '–' : f(r.eventsPerWakeup, 2)} | ${f(r.cpuPercent)}% |`
  );
}
