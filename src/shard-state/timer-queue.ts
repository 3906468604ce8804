/**
 * Many timers on one clock timer: the poll timers of every shard of a cache. A process that
 * follows a thousand shards would otherwise keep a thousand Node timers, each re-armed about
 * once a poll sleep (their insertion, expiry lists and callbacks were a quarter of a reader's
 * CPU in the e2e bench); here they are a binary min-heap by due time, and one clock timer is
 * armed for the earliest. Exact: each callback runs when its time comes, in due-time order
 * (ties in the order they were set or rescheduled). Due times are the clock's monotonic ms.
 *
 * A timer is moved in place (`reschedule`), a sift in the heap: a deadline that moves later
 * with every applied diff costs no wake-up, and the clock timer, armed for an earlier top, fires
 * once, finds nothing due and re-arms for the new top.
 *
 * The heap is kept in typed arrays indexed by slot (a pending timer's number): due time,
 * tie-break and heap position. A sift, once per applied diff in a reader, then reads and
 * writes a few kilobytes that stay in cache, instead of a dozen timer objects of other shards
 * (cold: in the e2e reader a heap of objects cost ~2.4 µs per reschedule, in process 0.75).
 */
import type { Clock, Timer } from '../util/index.js';

/** A timer of the queue; `cancel` is idempotent. */
export interface QueuedTimer {
  readonly atMs: number;
  /** Moves the timer to `atMs`, earlier or later; pending again if it fired or was cancelled. */
  reschedule(atMs: number): void;
  cancel(): void;
}

class Entry implements QueuedTimer {
  /** The slot while pending; -1 once fired or cancelled. */
  slot = -1;
  constructor(
    readonly queue: TimerQueue,
    public atMs: number,
    readonly fn: () => void,
  ) {}

  reschedule(atMs: number): void {
    this.queue.reschedule(this, atMs);
  }

  cancel(): void {
    this.queue.remove(this);
  }
}

const INITIAL_SLOTS = 64;

export class TimerQueue {
  readonly #clock: Clock;
  /** Pending timers. */
  #size = 0;
  /** Heap order: `#heap[i]` is the slot at heap position i (the first `#size`). */
  #heap = new Int32Array(INITIAL_SLOTS);
  /** By slot: heap position, due time, tie-break (set or rescheduled order), entry. */
  #pos = new Int32Array(INITIAL_SLOTS);
  #at = new Float64Array(INITIAL_SLOTS);
  #seq = new Float64Array(INITIAL_SLOTS);
  #entries: (Entry | undefined)[] = [];
  /** Slots not in use. */
  readonly #free: number[] = [];
  #seqNext = 0;
  #timer: Timer | undefined;
  /** When `#timer` fires (monotonic ms). */
  #timerAtMs = 0;

  /** `keepAlive`: the clock timer keeps the process alive (someone awaits these timers). */
  constructor(
    clock: Clock,
    readonly keepAlive: boolean,
  ) {
    this.#clock = clock;
  }

  /** Timers pending. */
  get size(): number {
    return this.#size;
  }

  /** Calls `fn` once at `atMs` (monotonic ms), unless cancelled first. */
  set(fn: () => void, atMs: number): QueuedTimer {
    const e = new Entry(this, atMs, fn);
    this.#add(e, atMs);
    this.#rearm();
    return e;
  }

  /** Moves `e` to `atMs` (a new tie-break place, as if set now); re-adds it if not pending. */
  reschedule(e: Entry, atMs: number): void {
    e.atMs = atMs;
    const slot = e.slot;
    if (slot < 0) {
      this.#add(e, atMs);
    } else {
      this.#at[slot] = atMs;
      this.#seq[slot] = this.#seqNext++;
      const i = this.#pos[slot] as number;
      this.#down(i);
      this.#up(this.#pos[slot] as number);
    }
    this.#rearm();
  }

  /** Removes `e` if it is pending. */
  remove(e: Entry): void {
    if (e.slot < 0) return;
    this.#take(e.slot);
    this.#rearm();
  }

  #add(e: Entry, atMs: number): void {
    const slot = this.#free.pop() ?? this.#grow();
    e.slot = slot;
    this.#entries[slot] = e;
    this.#at[slot] = atMs;
    this.#seq[slot] = this.#seqNext++;
    const i = this.#size++;
    this.#heap[i] = slot;
    this.#pos[slot] = i;
    this.#up(i);
  }

  /** A new slot, the arrays doubled when full. */
  #grow(): number {
    const slot = this.#entries.length;
    this.#entries.push(undefined);
    if (slot >= this.#at.length) {
      const n = this.#at.length * 2;
      const heap = new Int32Array(n);
      heap.set(this.#heap);
      this.#heap = heap;
      const pos = new Int32Array(n);
      pos.set(this.#pos);
      this.#pos = pos;
      const at = new Float64Array(n);
      at.set(this.#at);
      this.#at = at;
      const seq = new Float64Array(n);
      seq.set(this.#seq);
      this.#seq = seq;
    }
    return slot;
  }

  /** Takes `slot` out of the heap and frees it. */
  #take(slot: number): void {
    const e = this.#entries[slot] as Entry;
    e.slot = -1;
    this.#entries[slot] = undefined;
    this.#free.push(slot);
    const i = this.#pos[slot] as number;
    const lastAt = --this.#size;
    if (i !== lastAt) {
      const last = this.#heap[lastAt] as number;
      this.#heap[i] = last;
      this.#pos[last] = i;
      this.#down(i);
      this.#up(this.#pos[last] as number);
    }
  }

  /** Arms the clock timer for the earliest entry: at once if it moved earlier, none if empty. */
  #rearm(): void {
    if (this.#size === 0) {
      this.#timer?.cancel();
      this.#timer = undefined;
      return;
    }
    const topAtMs = this.#at[this.#heap[0] as number] as number;
    // A timer due earlier than the top is kept: it finds nothing due and re-arms (cheaper than
    // re-arming on every removal of the top).
    if (this.#timer !== undefined && this.#timerAtMs <= topAtMs) return;
    this.#timer?.cancel();
    const clock = this.#clock;
    this.#timerAtMs = topAtMs;
    this.#timer = clock.setTimer(() => this.#fire(), Math.max(0, topAtMs - clock.monotonicMs()), {
      keepAlive: this.keepAlive,
    });
  }

  #fire(): void {
    this.#timer = undefined;
    const now = this.#clock.monotonicMs();
    try {
      while (this.#size > 0) {
        const top = this.#heap[0] as number;
        // Due within a millisecond counts as due (a real timer's delay is whole milliseconds).
        if ((this.#at[top] as number) - now >= 1) break;
        const e = this.#entries[top] as Entry;
        this.#take(top);
        e.fn();
      }
    } finally {
      this.#rearm();
    }
  }

  /** Whether the timer in `a` is due before the one in `b`. */
  #before(a: number, b: number): boolean {
    const at = this.#at;
    const x = at[a] as number;
    const y = at[b] as number;
    return x < y || (x === y && (this.#seq[a] as number) < (this.#seq[b] as number));
  }

  #up(i: number): void {
    const h = this.#heap;
    const pos = this.#pos;
    const s = h[i] as number;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as number;
      if (!this.#before(s, parent)) break;
      h[i] = parent;
      pos[parent] = i;
      i = p;
    }
    h[i] = s;
    pos[s] = i;
  }

  #down(i: number): void {
    const h = this.#heap;
    const pos = this.#pos;
    const n = this.#size;
    const s = h[i] as number;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && this.#before(h[r] as number, h[l] as number)) c = r;
      const child = h[c] as number;
      if (!this.#before(child, s)) break;
      h[i] = child;
      pos[child] = i;
      i = c;
    }
    h[i] = s;
    pos[s] = i;
  }
}
