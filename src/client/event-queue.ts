/**
 * The bounded queue between a transport and the one consumer of `PubSubClient.events()`.
 * Backpressure decision (as the reference's bounded broadcast channel): the transport never
 * waits; when the queue is full a diff is dropped and counted, and its shard is remembered so
 * the consumer gets one `gap` (reason `client_lagged`) for it as soon as there is room, which
 * makes it fetch that shard from Consensus. Gaps and resyncs are never dropped: they are few
 * and each replaces any number of diffs.
 */
import type { PubSubEvent } from './pubsub-client.js';

export class EventQueue implements AsyncIterable<PubSubEvent> {
  readonly #items: PubSubEvent[] = [];
  readonly #lagged = new Set<string>();
  #waiter: ((r: IteratorResult<PubSubEvent>) => void) | undefined;
  #closed = false;
  #iterating = false;

  constructor(
    private readonly capacity: () => number,
    private readonly onDrop: (event: PubSubEvent) => void,
  ) {}

  /** Queues an event; returns false if it was dropped (its shard then gets a gap). */
  push(event: PubSubEvent): boolean {
    if (this.#closed) return false;
    if (this.#waiter !== undefined) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w({ value: event, done: false });
      return true;
    }
    if (event.kind === 'diff' && this.#items.length >= this.capacity()) {
      this.#lagged.add(event.shardId);
      this.onDrop(event);
      return false;
    }
    this.#items.push(event);
    return true;
  }

  get size(): number {
    return this.#items.length;
  }

  close(): void {
    this.#closed = true;
    this.#items.length = 0;
    this.#lagged.clear();
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.({ value: undefined, done: true });
  }

  #next(): PubSubEvent | undefined {
    const [lagged] = this.#lagged;
    if (lagged !== undefined) {
      this.#lagged.delete(lagged);
      return { kind: 'gap', shardId: lagged, reason: 'client_lagged', fromSeqno: undefined };
    }
    return this.#items.shift();
  }

  [Symbol.asyncIterator](): AsyncIterator<PubSubEvent> {
    if (this.#iterating) throw new Error('PubSubClient.events() has one consumer');
    this.#iterating = true;
    return {
      next: () => {
        const item = this.#next();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.#closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.#waiter = resolve;
        });
      },
      return: () => {
        this.#iterating = false;
        const w = this.#waiter;
        this.#waiter = undefined;
        w?.({ value: undefined, done: true });
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
