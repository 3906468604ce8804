/**
 * Best-effort work of a cache's shards that no caller waits for (the truncation behind a
 * rollup), run a few tasks per event-loop turn instead of in the turn that queued them.
 *
 * Why: shards created together at the same commit rate reach their rollup seqno together, and
 * on an embedded Consensus (SQLite, synchronous) each truncate holds the event loop for its
 * whole transaction. 1,000 of them in the commit turn stopped a writer for 250 ms, and every
 * push and commit behind it (`bench/results/notes.md` "Commit → observed tails"). Queued here,
 * at most `perTurn` start in each turn, and the commits, pushes and reads of the turns between
 * go first.
 */

/** Runs `fn` in a later turn of the event loop (`setImmediate`; a test passes its own). */
export type Defer = (fn: () => void) => void;

export const DEFAULT_BACKGROUND_TASKS_PER_TURN = 4;

const deferImmediate: Defer = (fn) => {
  setImmediate(fn);
};

export class BackgroundQueue {
  readonly #tasks: Array<() => void> = [];
  /** Index of the next task to run: the array is compacted only once it has drained. */
  #next = 0;
  #scheduled = false;
  readonly #perTurn: number;
  readonly #defer: Defer;
  readonly #onError: (err: unknown) => void;

  constructor(options: { perTurn?: number; defer?: Defer; onError?: (err: unknown) => void } = {}) {
    const perTurn = options.perTurn ?? DEFAULT_BACKGROUND_TASKS_PER_TURN;
    if (!Number.isInteger(perTurn) || perTurn < 1) {
      throw new RangeError(`perTurn must be an integer ≥ 1, got ${perTurn}`);
    }
    this.#perTurn = perTurn;
    this.#defer = options.defer ?? deferImmediate;
    this.#onError = options.onError ?? (() => {});
  }

  /** Tasks queued and not yet started. */
  get pending(): number {
    return this.#tasks.length - this.#next;
  }

  /** Queues `task` to start in a later turn, after those queued before it. */
  run(task: () => void): void {
    this.#tasks.push(task);
    this.#schedule();
  }

  /**
   * Starts every queued task now, in order (a closing cache: what it queued still starts
   * before its caller closes the Consensus store under it).
   */
  drain(): void {
    while (this.#next < this.#tasks.length) this.#start(this.#next++);
    this.#tasks.length = 0;
    this.#next = 0;
  }

  #start(i: number): void {
    const task = this.#tasks[i]!;
    this.#tasks[i] = NOOP;
    try {
      task();
    } catch (err) {
      this.#onError(err);
    }
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    this.#defer(this.#turn);
  }

  readonly #turn = (): void => {
    this.#scheduled = false;
    const end = Math.min(this.#next + this.#perTurn, this.#tasks.length);
    while (this.#next < end) this.#start(this.#next++);
    if (this.#next === this.#tasks.length) {
      this.#tasks.length = 0;
      this.#next = 0;
    } else {
      this.#schedule();
    }
  };
}

const NOOP = (): void => {};
