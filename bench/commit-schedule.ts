/**
 * The e2e writers' commit schedule: every shard commits at `ratePerShard`, shard g's commit k due
 * at t0 + phase(g) + k / rate, driven by ONE timer per writer process (armed for the next due
 * commit) instead of a timer, a promise and a closure per commit.
 *
 * - `phase(g)` spreads the shards evenly over a period (g / totalShards of it). With a slot
 *   (`slotMs` > 0) the phases are rounded down to multiples of the slot, so the shards of one
 *   slot fall due together, as under a group-commit tick: the same commits per second per shard,
 *   each still made at its due time, in fewer wake-ups (one per slot instead of about one per
 *   commit; docs of `bench e2e --writer-slot-ms`).
 * - A shard's commits run one at a time. A commit that falls due while the shard's previous one
 *   is still in flight (the process fell behind) is made as soon as that one ends, never
 *   skipped, and keeps its due time (coordinated omission: the readers measure from it). Those
 *   late commits start from one `setImmediate`, so a writer that fell behind still serves its
 *   sockets and IPC between them.
 */

/** The phase of global shard `g`, in ms within the period. */
export function commitPhaseMs(
  g: number,
  totalShards: number,
  periodMs: number,
  slotMs: number,
): number {
  const phase = (g / totalShards) * periodMs;
  return slotMs > 0 ? Math.floor(phase / slotMs) * slotMs : phase;
}

export interface CommitScheduleOptions {
  /** Phases of this process's shards, in ms within the period, ascending. */
  phasesMs: readonly number[];
  periodMs: number;
  /** When round 0 starts (wall ms). */
  t0: number;
  nowMs: () => number;
  /** Arms the one timer; a later call replaces nothing (the scheduler arms one at a time). */
  setTimer: (fn: () => void, delayMs: number) => void;
  /** Defers a function to the event loop's next check phase. */
  setImmediate: (fn: () => void) => void;
  /** Makes shard `i`'s commit due at `dueMs`; resolves when it is over (never rejects). */
  commit: (i: number, dueMs: number) => Promise<void>;
}

export class CommitSchedule {
  readonly #o: CommitScheduleOptions;
  /** The next commit to fall due: shard `#next` of round `#round`. */
  #next = 0;
  #round = 0;
  #stopped = false;
  /** Per shard: whether its commit is in flight, and the due times of those waiting for it. */
  readonly #busy: boolean[];
  readonly #waiting: (number[] | undefined)[];
  /** Shards whose waiting commit may start (their previous one ended). */
  #late: number[] = [];
  #lateArmed = false;
  #inflight = 0;
  #idle: (() => void) | undefined;

  constructor(options: CommitScheduleOptions) {
    const { phasesMs, periodMs } = options;
    for (let i = 0; i < phasesMs.length; i++) {
      const p = phasesMs[i] as number;
      if (!(p >= 0 && p < periodMs) || (i > 0 && p < (phasesMs[i - 1] as number))) {
        throw new Error('phases must be ascending and within the period');
      }
    }
    this.#o = options;
    this.#busy = phasesMs.map(() => false);
    this.#waiting = phasesMs.map(() => undefined);
  }

  /** Starts the schedule: commits fall due from `t0` on until `stop()`. */
  start(): void {
    if (this.#o.phasesMs.length > 0) this.#wake();
  }

  /** No commit starts after this; resolves once those in flight are over. */
  stop(): Promise<void> {
    this.#stopped = true;
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#idle = resolve;
    });
  }

  #dueMs(): number {
    const { t0, phasesMs, periodMs } = this.#o;
    return t0 + (phasesMs[this.#next] as number) + this.#round * periodMs;
  }

  readonly #wake = (): void => {
    if (this.#stopped) return;
    const { nowMs, phasesMs } = this.#o;
    const now = nowMs();
    for (let due = this.#dueMs(); due <= now; due = this.#dueMs()) {
      const i = this.#next;
      if (!this.#busy[i]) this.#run(i, due);
      else {
        const waiting = this.#waiting[i] ?? [];
        waiting.push(due);
        this.#waiting[i] = waiting;
      }
      if (++this.#next === phasesMs.length) {
        this.#next = 0;
        this.#round++;
      }
    }
    // Rounded up: a timer fires no earlier than asked, so no commit starts before its time.
    this.#o.setTimer(this.#wake, Math.ceil(this.#dueMs() - nowMs()));
  };

  #run(i: number, due: number): void {
    this.#busy[i] = true;
    this.#inflight++;
    void this.#o.commit(i, due).then(() => this.#ended(i));
  }

  #ended(i: number): void {
    this.#busy[i] = false;
    this.#inflight--;
    if (!this.#stopped && (this.#waiting[i]?.length ?? 0) > 0) {
      this.#late.push(i);
      if (!this.#lateArmed) {
        this.#lateArmed = true;
        this.#o.setImmediate(this.#startLate);
      }
    }
    if (this.#inflight === 0 && this.#stopped) this.#idle?.();
  }

  readonly #startLate = (): void => {
    this.#lateArmed = false;
    const late = this.#late;
    this.#late = [];
    for (const i of late) {
      const due = this.#waiting[i]?.shift();
      if (!this.#stopped && due !== undefined) this.#run(i, due);
    }
    if (this.#stopped && this.#inflight === 0) this.#idle?.();
  };
}
