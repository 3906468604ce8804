/**
 * The bounded queue between a transport and the one consumer of `PubSubClient.events()` (one
 * event at a time) or `eventBatches()` (everything queued, at once). Backpressure decision (as
 * the reference's bounded broadcast channel): the transport never waits; when the queue is full
 * a diff is dropped and counted, and its shard is remembered so the consumer gets one `gap`
 * (reason `client_lagged`) for it as soon as there is room, which makes it fetch that shard from
 * Consensus. Gaps and resyncs are never dropped: they are few and each replaces any number of
 * diffs.
 *
 * What counts against the bound is what waits for a busy consumer. A batch consumer that is
 * waiting takes everything the transport delivers in this event-loop turn (one network read,
 * `ConnectOptions.onMessage`) at its next step, so that turn's messages are all accepted: a read
 * of a hundred diffs is one batch, not 25 diffs and 75 gaps.
 *
 * A third kind of consumer, `sink(fn)`, takes each event synchronously as it is pushed: nothing
 * is queued, so nothing waits and nothing is dropped. For a consumer that handles an event at
 * once and never waits (the persist client applies a diff in the socket read that brought it):
 * no event is held, no promise or iterator result is made per batch, and the apply is not two
 * microtask hops after the read.
 */
import type { PubSubEvent } from './pubsub-client.js';

const RESOLVED: Promise<void> = Promise.resolve();
const DONE: IteratorResult<never, undefined> = Object.freeze({ value: undefined, done: true });

export class EventQueue implements AsyncIterable<PubSubEvent> {
  #items: PubSubEvent[] = [];
  readonly #lagged = new Set<string>();
  /** Wakes the waiting consumer. */
  #wake: (() => void) | undefined;
  /** A batch consumer waits (or was woken and has not run yet): it takes this turn's all. */
  #batchWaiting = false;
  #closed = false;
  #iterating = false;
  /** The synchronous consumer, while `sink` holds it. */
  #sink: ((event: PubSubEvent) => void) | undefined;

  constructor(
    private readonly capacity: () => number,
    private readonly onDrop: (event: PubSubEvent) => void,
  ) {}

  /** Queues an event; returns false if it was dropped (its shard then gets a gap). */
  push(event: PubSubEvent): boolean {
    if (this.#closed) return false;
    const sink = this.#sink;
    if (sink !== undefined) {
      sink(event);
      return true;
    }
    if (event.kind === 'diff' && !this.#batchWaiting && this.#items.length >= this.capacity()) {
      this.#lagged.add(event.shardId);
      this.onDrop(event);
      return false;
    }
    this.#items.push(event);
    const w = this.#wake;
    if (w !== undefined) {
      this.#wake = undefined;
      w();
    }
    return true;
  }

  get size(): number {
    return this.#items.length;
  }

  close(): void {
    this.#closed = true;
    this.#sink = undefined;
    this.#items.length = 0;
    this.#lagged.clear();
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  #next(): PubSubEvent | undefined {
    const [lagged] = this.#lagged;
    if (lagged !== undefined) {
      this.#lagged.delete(lagged);
      return { kind: 'gap', shardId: lagged, reason: 'client_lagged', fromSeqno: undefined };
    }
    return this.#items.shift();
  }

  /** Everything queued (lagged shards' gaps first), or undefined if nothing is. */
  #takeAll(): PubSubEvent[] | undefined {
    if (this.#lagged.size === 0) {
      if (this.#items.length === 0) return undefined;
      const all = this.#items;
      this.#items = [];
      return all;
    }
    const all: PubSubEvent[] = [];
    for (const shardId of this.#lagged) {
      all.push({ kind: 'gap', shardId, reason: 'client_lagged', fromSeqno: undefined });
    }
    this.#lagged.clear();
    for (const e of this.#items) all.push(e);
    this.#items = [];
    return all;
  }

  #claim(): void {
    if (this.#iterating) throw new Error('PubSubClient.events() has one consumer');
    this.#iterating = true;
  }

  #release(): IteratorResult<never, undefined> {
    this.#iterating = false;
    this.#batchWaiting = false;
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
    return { value: undefined, done: true };
  }

  /**
   * Hands every event to `fn` as it is pushed, synchronously, until the returned function is
   * called or the queue closes (what was queued before goes to `fn` first, at once). The same
   * one consumer as the iterables. `fn` must not throw: it runs inside the transport's read.
   */
  sink(fn: (event: PubSubEvent) => void): () => void {
    this.#claim();
    for (let e = this.#next(); e !== undefined; e = this.#next()) fn(e);
    if (!this.#closed) this.#sink = fn;
    return () => {
      if (this.#sink !== fn) return;
      this.#sink = undefined;
      this.#release();
    };
  }

  [Symbol.asyncIterator](): AsyncIterator<PubSubEvent> {
    this.#claim();
    return {
      next: () => {
        const item = this.#next();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.#closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.#wake = () => {
            const it = this.#iterating ? this.#next() : undefined;
            resolve(
              it === undefined ? { value: undefined, done: true } : { value: it, done: false },
            );
          };
        });
      },
      return: () => Promise.resolve(this.#release()),
    };
  }

  /**
   * The queued events a batch at a time: each batch is what arrived since the last one. Not an
   * async function: a wait costs one promise, and the wake-up one reaction (the take is a
   * microtask after the push that woke it, so the batch holds all of that turn's messages).
   */
  batches(): AsyncIterable<readonly PubSubEvent[]> {
    return {
      [Symbol.asyncIterator]: () => {
        this.#claim();
        type Result = IteratorResult<readonly PubSubEvent[], undefined>;
        /** The next result if there is one now, else undefined (wait). */
        const settle = (): Result | undefined => {
          if (!this.#iterating) return DONE;
          const batch = this.#takeAll();
          if (batch !== undefined) {
            this.#batchWaiting = false;
            return { value: batch, done: false };
          }
          return this.#closed ? DONE : undefined;
        };
        let resolveNext: ((r: Result) => void) | undefined;
        const capture = (resolve: (r: Result) => void): void => {
          resolveNext = resolve;
        };
        const deliver = (): void => {
          const r = settle();
          if (r === undefined) {
            this.#wake = onWake;
            return;
          }
          const resolve = resolveNext;
          resolveNext = undefined;
          resolve?.(r);
        };
        const onWake = (): void => {
          void RESOLVED.then(deliver);
        };
        const next = (): Promise<Result> => {
          const r = settle();
          if (r !== undefined) return Promise.resolve(r);
          this.#batchWaiting = true;
          this.#wake = onWake;
          return new Promise<Result>(capture);
        };
        return { next, return: () => Promise.resolve(this.#release()) };
      },
    };
  }
}
