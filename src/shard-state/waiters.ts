/**
 * A shard's pending waits (`waitForSeqno`, `listen`) and how they are woken. A wait that an
 * applied version satisfies leaves the list at once (an abort or a close no longer concerns it)
 * and is resolved, with the shard's snapshot, when the synchronous run of applies that satisfied
 * it is over: a batch of pushed diffs read in one turn wakes each waiter once, with the state
 * after the whole batch, through one microtask for every shard of the cache (`WakeQueue`).
 *
 * `WaitList` keeps the usual case (one reader waiting on a shard) in a field, so that a wait
 * that comes and goes with every diff costs no hash-set insertion and deletion.
 */
import type { AbortWatcher } from '../util/index.js';

/** A pending wait: resolved when the state reaches `seqno`. */
export interface Wait<V> extends AbortWatcher {
  readonly seqno: bigint;
  /** The handle that waits (its close rejects its waits). */
  readonly owner: object | undefined;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (value: V) => void;
  readonly reject: (err: unknown) => void;
}

/** The pending waits of one shard, in the order they were made. */
export class WaitList<W extends { readonly seqno: bigint }> {
  /** The oldest wait, while `#rest` is empty: the one-waiter case needs no set. */
  #first: W | undefined;
  /** Every other wait, newer than `#first`. */
  #rest: Set<W> | undefined;

  get size(): number {
    return (this.#first === undefined ? 0 : 1) + (this.#rest?.size ?? 0);
  }

  add(w: W): void {
    if (this.#first === undefined && (this.#rest === undefined || this.#rest.size === 0)) {
      this.#first = w;
      return;
    }
    this.#rest ??= new Set();
    this.#rest.add(w);
  }

  /** Removes `w`; false if it was not in the list. */
  delete(w: W): boolean {
    if (this.#first === w) {
      this.#first = undefined;
      return true;
    }
    return this.#rest?.delete(w) ?? false;
  }

  /** Removes every wait that `remove` picks and hands it to `take`, oldest first. */
  removeWhere(remove: (w: W) => boolean, take: (w: W) => void): void {
    const first = this.#first;
    if (first !== undefined && remove(first)) {
      this.#first = undefined;
      take(first);
    }
    const rest = this.#rest;
    if (rest === undefined || rest.size === 0) return;
    for (const w of rest) {
      if (!remove(w)) continue;
      rest.delete(w);
      take(w);
    }
  }

  /** Removes the waits at or below `seqno` and hands each to `take`, oldest first. */
  removeDue(seqno: bigint, take: (w: W) => void): void {
    const first = this.#first;
    if (first !== undefined && first.seqno <= seqno) {
      this.#first = undefined;
      take(first);
    }
    const rest = this.#rest;
    if (rest === undefined || rest.size === 0) return;
    for (const w of rest) {
      if (w.seqno > seqno) continue;
      rest.delete(w);
      take(w);
    }
  }

  /** Removes and returns every wait, oldest first. */
  clear(): W[] {
    const all: W[] = [];
    if (this.#first !== undefined) all.push(this.#first);
    if (this.#rest !== undefined) for (const w of this.#rest) all.push(w);
    this.#first = undefined;
    this.#rest?.clear();
    return all;
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

/** Something with satisfied waits to resolve once the current run of applies is over. */
export interface Wakeable {
  wakeDue(): void;
}

/**
 * The wake-ups of a cache's shards: `schedule(shard)` (once per shard per run of applies) and
 * one microtask, queued by the first, calls every scheduled shard's `wakeDue` in order.
 */
export class WakeQueue {
  /** The first `#count` are scheduled (by index: the array keeps its storage between runs). */
  readonly #pending: (Wakeable | undefined)[] = [];
  #count = 0;
  readonly #run = (): void => {
    const pending = this.#pending;
    // A shard scheduled while this runs (none today: waking runs no waiter code) still runs.
    for (let i = 0; i < this.#count; i++) {
      const s = pending[i] as Wakeable;
      pending[i] = undefined;
      s.wakeDue();
    }
    this.#count = 0;
  };

  schedule(s: Wakeable): void {
    this.#pending[this.#count++] = s;
    // A promise reaction, not `queueMicrotask` (which wraps each callback in an AsyncResource).
    if (this.#count === 1) void RESOLVED.then(this.#run);
  }
}
