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
  /** Position in the heap; -1 once fired or cancelled. */
  index = -1;
  constructor(
    readonly queue: TimerQueue,
    public atMs: number,
    public seq: number,
    readonly fn: () => void,
  ) {}

  reschedule(atMs: number): void {
    this.queue.reschedule(this, atMs);
  }

  cancel(): void {
    this.queue.remove(this);
  }
}

const before = (a: Entry, b: Entry): boolean =>
  a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);

export class TimerQueue {
  readonly #clock: Clock;
  readonly #heap: Entry[] = [];
  #seq = 0;
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
    return this.#heap.length;
  }

  /** Calls `fn` once at `atMs` (monotonic ms), unless cancelled first. */
  set(fn: () => void, atMs: number): QueuedTimer {
    const e = new Entry(this, atMs, this.#seq++, fn);
    e.index = this.#heap.length;
    this.#heap.push(e);
    this.#up(e.index);
    this.#rearm();
    return e;
  }

  /** Moves `e` to `atMs` (a new tie-break place, as if set now); re-adds it if not pending. */
  reschedule(e: Entry, atMs: number): void {
    e.atMs = atMs;
    e.seq = this.#seq++;
    const i = e.index;
    if (i < 0 || this.#heap[i] !== e) {
      e.index = this.#heap.length;
      this.#heap.push(e);
      this.#up(e.index);
    } else {
      this.#down(i);
      this.#up(e.index);
    }
    this.#rearm();
  }

  /** Removes `e` if it is pending. */
  remove(e: Entry): void {
    if (this.#take(e)) this.#rearm();
  }

  #take(e: Entry): boolean {
    const i = e.index;
    if (i < 0 || this.#heap[i] !== e) return false;
    e.index = -1;
    const last = this.#heap.pop() as Entry;
    if (last !== e) {
      this.#heap[i] = last;
      last.index = i;
      this.#down(i);
      this.#up(last.index);
    }
    return true;
  }

  /** Arms the clock timer for the earliest entry: at once if it moved earlier, none if empty. */
  #rearm(): void {
    const top = this.#heap[0];
    if (top === undefined) {
      this.#timer?.cancel();
      this.#timer = undefined;
      return;
    }
    // A timer due earlier than the top is kept: it finds nothing due and re-arms (cheaper than
    // re-arming on every removal of the top).
    if (this.#timer !== undefined && this.#timerAtMs <= top.atMs) return;
    this.#timer?.cancel();
    const clock = this.#clock;
    this.#timerAtMs = top.atMs;
    this.#timer = clock.setTimer(() => this.#fire(), Math.max(0, top.atMs - clock.monotonicMs()), {
      keepAlive: this.keepAlive,
    });
  }

  #fire(): void {
    this.#timer = undefined;
    const now = this.#clock.monotonicMs();
    try {
      for (;;) {
        const top = this.#heap[0];
        // Due within a millisecond counts as due (a real timer's delay is whole milliseconds).
        if (top === undefined || top.atMs - now >= 1) break;
        this.#take(top);
        top.fn();
      }
    } finally {
      this.#rearm();
    }
  }

  #up(i: number): void {
    const h = this.#heap;
    const e = h[i] as Entry;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as Entry;
      if (!before(e, parent)) break;
      h[i] = parent;
      parent.index = i;
      i = p;
    }
    h[i] = e;
    e.index = i;
  }

  #down(i: number): void {
    const h = this.#heap;
    const n = h.length;
    const e = h[i] as Entry;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && before(h[r] as Entry, h[l] as Entry)) c = r;
      const child = h[c] as Entry;
      if (!before(child, e)) break;
      h[i] = child;
      child.index = i;
      i = c;
    }
    h[i] = e;
    e.index = i;
  }
}
