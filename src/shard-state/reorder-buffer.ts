/**
 * Pushed diffs that arrived ahead of the next seqno, held briefly so that a reordered delivery
 * heals without a Consensus read (docs/architecture.md "Applying a received diff": ours
 * recovers a gap at once, where the reference drops the diff and waits for the next poll).
 *
 * State: `#gap`, one tagged union changed only by `#to`: `none` while nothing is held, `open`
 * from the moment a diff is held until the held set empties (the gap→applied histogram measures
 * that span). The held diffs themselves are a map by seqno beside it. Pure: time comes in as
 * arguments, timers are the shard's.
 */

export type GapPhase =
  | { readonly kind: 'none' }
  /**
   * Diffs are held since `sinceMs` (monotonic clock ms, for the histogram); the current reorder window
   * started at `windowStartMs` (a read that leaves a gap behind gives it a window of its own).
   */
  | { readonly kind: 'open'; readonly sinceMs: number; readonly windowStartMs: number };

const NONE: GapPhase = Object.freeze({ kind: 'none' });

export class ReorderBuffer<T> {
  readonly #held = new Map<bigint, T>();
  /**
   * `#held.size`, kept here: every applied diff asks whether anything is held, and answering
   * from the map loaded the map and its table (two cold lines per update in a reader following
   * a thousand shards, nearly always to learn that nothing is).
   */
  #size = 0;
  #gap: GapPhase = NONE;

  get size(): number {
    return this.#size;
  }

  get gap(): GapPhase {
    return this.#gap;
  }

  has(seqno: bigint): boolean {
    return this.#held.has(seqno);
  }

  /** Holds `item` at `seqno` (replacing a duplicate). */
  hold(seqno: bigint, item: T): void {
    this.#held.set(seqno, item);
    this.#size = this.#held.size;
  }

  /** Starts the gap's clock if it is not running and something is held. */
  openGap(nowMs: number): void {
    if (this.#gap.kind === 'none' && this.#size > 0) {
      this.#to({ kind: 'open', sinceMs: nowMs, windowStartMs: nowMs });
    }
  }

  /** A read left a gap behind: it gets a new reorder window (the histogram's start stays). */
  newWindow(nowMs: number): void {
    const g = this.#gap;
    if (g.kind === 'open') this.#to({ kind: 'open', sinceMs: g.sinceMs, windowStartMs: nowMs });
    else this.openGap(nowMs);
  }

  /** Removes and returns the item held at `seqno`. */
  take(seqno: bigint): T | undefined {
    const item = this.#held.get(seqno);
    if (item !== undefined) {
      this.#held.delete(seqno);
      this.#size = this.#held.size;
    }
    return item;
  }

  /** The lowest held seqno. */
  lowest(): bigint | undefined {
    let min: bigint | undefined;
    for (const s of this.#held.keys()) if (min === undefined || s < min) min = s;
    return min;
  }

  /**
   * Drops what the state at `seqno` has made stale. If that empties the buffer while a gap was
   * open, closes it and returns how long it was open (ms); otherwise undefined.
   */
  discardThrough(seqno: bigint, nowMs: number): number | undefined {
    if (this.#size > 0) {
      for (const s of this.#held.keys()) if (s <= seqno) this.#held.delete(s);
      this.#size = this.#held.size;
    }
    return this.#size === 0 ? this.closeGap(nowMs) : undefined;
  }

  /** Closes an open gap: returns how long it was open (ms), or undefined if none was. */
  closeGap(nowMs: number): number | undefined {
    const g = this.#gap;
    if (g.kind !== 'open') return undefined;
    this.#to(NONE);
    return nowMs - g.sinceMs;
  }

  clear(): void {
    this.#held.clear();
    this.#size = 0;
    this.#to(NONE);
  }

  #to(next: GapPhase): void {
    this.#gap = next;
  }
}
