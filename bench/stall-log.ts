/**
 * A benchmark process's own record of its event-loop stalls (`--stall-log` of `bench e2e`):
 * which process stopped, when (wall clock, comparable between the processes of one host) and
 * for how long, so that a latency tail can be matched to a stall in one process, and the stall
 * to a GC pause, to the process's own work or to the machine.
 *
 * A coarse timer (every `intervalMs`, 20 ms by default) compares when it fired with when it was
 * due; a tick later than `thresholdMs` is a stall, recorded with what the main thread did
 * meanwhile, from `/proc/thread-self/schedstat`: time on a CPU (its own JavaScript, a GC pause,
 * a synchronous call such as a SQLite commit) and time runnable but waiting for a CPU (the
 * machine's other load); the rest of the gap it was blocked (a sleep or an fsync in a
 * synchronous call: SQLite's busy handler, its checkpoints). GC pauses come from a
 * `PerformanceObserver` (each one's start and duration on the main thread).
 * Opt-in, because every wake-up costs: an idle process on this VM (load 8–9) used 0.2 ms of CPU a
 * second without it, 13–16 with a 10 ms tick (10–11 for the timer alone, the schedstat read the
 * rest), 7.7–10 at 20 ms (the default); the old 1 ms `monitorEventLoopDelay` of the e2e broker cost
 * 7 µs per delivery.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';

/** One stall: the loop ran `gapMs` later than its timer was due. */
export interface StallRecord {
  /** Wall time of the last tick before the stall (ms since the epoch): the stall began after. */
  atMs: number;
  /** How late the tick was (ms beyond its interval). */
  gapMs: number;
  /** Of the whole time between the two ticks: the main thread on a CPU (ms), or null. */
  onCpuMs: number | null;
  /** Of the whole time between the two ticks: runnable, waiting for a CPU (ms), or null. */
  runQueueMs: number | null;
}

export type GcKind = 'scavenge' | 'mark-compact' | 'incremental' | 'weak-callbacks' | 'other';

/** One GC pause of the main thread. */
export interface GcRecord {
  /** Wall time it began (ms since the epoch). */
  atMs: number;
  durationMs: number;
  kind: GcKind;
}

/** What a process reports: its stalls and its GC pauses over the log's life. */
export interface StallLog {
  name: string;
  pid: number;
  intervalMs: number;
  thresholdMs: number;
  ticks: number;
  stalls: StallRecord[];
  /** GC pauses of at least `gcThresholdMs`, and every mark-compact. */
  gcs: GcRecord[];
  /** Counts and total pause of every GC, by kind (below the threshold too). */
  gcTotals: Record<GcKind, { count: number; pauseMs: number }>;
  /** Records not kept past `maxRecords` (stalls and GCs). */
  dropped: number;
}

/** What the detector reads at each tick (the real one: `performance.now`, schedstat). */
export interface StallProbe {
  /** Monotonic ms. */
  monotonicMs(): number;
  /** Wall ms since the epoch, on the same scale as the other processes'. */
  wallMs(): number;
  /** The main thread's cumulative [on-CPU ns, run-queue wait ns], or null where unknown. */
  schedNs(): [number, number] | null;
}

export interface StallLogOptions {
  name: string;
  /** @default 10 */
  intervalMs?: number;
  /** A tick at least this late is recorded. @default 10 */
  thresholdMs?: number;
  /** GC pauses at least this long are recorded (mark-compacts always). @default 5 */
  gcThresholdMs?: number;
  /** @default 5000 */
  maxRecords?: number;
}

const DEFAULT_INTERVAL_MS = 20;
const DEFAULT_THRESHOLD_MS = 10;
const DEFAULT_GC_THRESHOLD_MS = 5;
const DEFAULT_MAX_RECORDS = 5000;

/**
 * The pure part: fed one `tick()` per timer expiry, records each late one. The timer and the
 * GC observer are `startStallLog`'s.
 */
export class StallDetector {
  private lastMono: number;
  private lastWall: number;
  private lastSched: [number, number] | null;
  private ticks = 0;
  private dropped = 0;
  private readonly stalls: StallRecord[] = [];
  private readonly gcs: GcRecord[] = [];
  private readonly gcTotals: StallLog['gcTotals'] = {
    scavenge: { count: 0, pauseMs: 0 },
    'mark-compact': { count: 0, pauseMs: 0 },
    incremental: { count: 0, pauseMs: 0 },
    'weak-callbacks': { count: 0, pauseMs: 0 },
    other: { count: 0, pauseMs: 0 },
  };
  readonly intervalMs: number;
  readonly thresholdMs: number;
  readonly gcThresholdMs: number;
  private readonly maxRecords: number;

  constructor(
    private readonly probe: StallProbe,
    options: Omit<StallLogOptions, 'name'> = {},
  ) {
    this.intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
    this.thresholdMs = options.thresholdMs ?? DEFAULT_THRESHOLD_MS;
    this.gcThresholdMs = options.gcThresholdMs ?? DEFAULT_GC_THRESHOLD_MS;
    this.maxRecords = options.maxRecords ?? DEFAULT_MAX_RECORDS;
    for (const [field, v] of [
      ['intervalMs', this.intervalMs],
      ['thresholdMs', this.thresholdMs],
      ['gcThresholdMs', this.gcThresholdMs],
      ['maxRecords', this.maxRecords],
    ] as const) {
      if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${field} must be > 0, got ${v}`);
    }
    this.lastMono = probe.monotonicMs();
    this.lastWall = probe.wallMs();
    this.lastSched = probe.schedNs();
  }

  /** One timer expiry. */
  tick(): void {
    this.ticks++;
    const mono = this.probe.monotonicMs();
    const gap = mono - this.lastMono - this.intervalMs;
    // The counters are read at every tick (one pread, ~4 µs), so that a late tick has the
    // previous tick's to compare with: the figures then cover exactly the stalled interval.
    const sched = this.probe.schedNs();
    if (gap >= this.thresholdMs) {
      const prev = this.lastSched;
      this.keep(this.stalls, {
        atMs: this.lastWall,
        gapMs: round(gap),
        onCpuMs: sched === null || prev === null ? null : round((sched[0] - prev[0]) / 1e6),
        runQueueMs: sched === null || prev === null ? null : round((sched[1] - prev[1]) / 1e6),
      });
    }
    this.lastSched = sched;
    this.lastMono = mono;
    this.lastWall = this.probe.wallMs();
  }

  /** One GC pause (from the observer). */
  gc(kind: GcKind, atMs: number, durationMs: number): void {
    const t = this.gcTotals[kind];
    t.count++;
    t.pauseMs += durationMs;
    if (durationMs >= this.gcThresholdMs || kind === 'mark-compact') {
      this.keep(this.gcs, { atMs, durationMs: round(durationMs), kind });
    }
  }

  private keep<T>(list: T[], r: T): void {
    if (list.length >= this.maxRecords) this.dropped++;
    else list.push(r);
  }

  log(name: string, pid: number): StallLog {
    const gcTotals = Object.fromEntries(
      Object.entries(this.gcTotals).map(([k, v]) => [
        k,
        { count: v.count, pauseMs: round(v.pauseMs) },
      ]),
    ) as StallLog['gcTotals'];
    return {
      name,
      pid,
      intervalMs: this.intervalMs,
      thresholdMs: this.thresholdMs,
      ticks: this.ticks,
      stalls: [...this.stalls],
      gcs: [...this.gcs],
      gcTotals,
      dropped: this.dropped,
    };
  }
}

const round = (x: number) => Math.round(x * 100) / 100;

/** The V8 GC flags of a `gc` performance entry, by name. */
export function gcKindOf(flag: number): GcKind {
  switch (flag) {
    case perfConstants.NODE_PERFORMANCE_GC_MINOR:
      return 'scavenge';
    case perfConstants.NODE_PERFORMANCE_GC_MAJOR:
      return 'mark-compact';
    case perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL:
      return 'incremental';
    case perfConstants.NODE_PERFORMANCE_GC_WEAKCB:
      return 'weak-callbacks';
    default:
      return 'other';
  }
}

/**
 * The main thread's schedstat (cumulative [on-CPU ns, run-queue wait ns]), read with one `pread`
 * on a descriptor kept open; call it from the main thread.
 */
export function schedstatReader(): { read: () => [number, number] | null; close: () => void } {
  let fd: number | undefined;
  try {
    // Opened from the main thread, so `thread-self` is the thread that runs JavaScript.
    fd = openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return { read: () => null, close: () => undefined };
  }
  const buf = Buffer.alloc(128);
  return {
    read: () => {
      if (fd === undefined) return null;
      const n = readSync(fd, buf, 0, buf.length, 0);
      const [cpu, wait] = buf.toString('latin1', 0, n).split(' ');
      return [Number(cpu), Number(wait)];
    },
    close: () => {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}

export interface RunningStallLog {
  /** The log so far. */
  log(): StallLog;
  /** Stops the timer and the observer. Idempotent. */
  stop(): void;
}

/** Starts the timer and the GC observer in this process. */
export function startStallLog(options: StallLogOptions): RunningStallLog {
  const sched = schedstatReader();
  const origin = performance.timeOrigin;
  const detector = new StallDetector(
    {
      monotonicMs: () => performance.now(),
      wallMs: () => origin + performance.now(),
      schedNs: sched.read,
    },
    options,
  );
  const timer = setInterval(() => detector.tick(), detector.intervalMs);
  timer.unref();
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const detail = (e as { detail?: { kind?: number } }).detail;
      detector.gc(gcKindOf(detail?.kind ?? -1), origin + e.startTime, e.duration);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  let stopped = false;
  return {
    log: () => detector.log(options.name, process.pid),
    stop: () => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      observer.disconnect();
      sched.close();
    },
  };
}
