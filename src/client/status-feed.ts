/**
 * Fan-out of connection status changes to any number of async iterators. Each iterator starts
 * with the current status and keeps its own queue (bounded: status changes are rare, and a
 * consumer that stops reading loses the oldest ones, never the latest).
 */
import type { ConnectionStatus } from './pubsub-client.js';

const MAX_QUEUED = 256;

export class StatusFeed {
  #current: ConnectionStatus;
  readonly #subscribers = new Set<{
    queue: ConnectionStatus[];
    wake: (() => void) | undefined;
  }>();
  #ended = false;

  constructor(initial: ConnectionStatus) {
    this.#current = initial;
  }

  get current(): ConnectionStatus {
    return this.#current;
  }

  publish(status: ConnectionStatus): void {
    this.#current = status;
    for (const s of this.#subscribers) {
      s.queue.push(status);
      if (s.queue.length > MAX_QUEUED) s.queue.shift();
      const w = s.wake;
      s.wake = undefined;
      w?.();
    }
  }

  end(): void {
    this.#ended = true;
    for (const s of this.#subscribers) {
      const w = s.wake;
      s.wake = undefined;
      w?.();
    }
  }

  iterate(): AsyncIterable<ConnectionStatus> {
    return {
      [Symbol.asyncIterator]: () => {
        const sub = { queue: [this.#current], wake: undefined as (() => void) | undefined };
        this.#subscribers.add(sub);
        const next = async (): Promise<IteratorResult<ConnectionStatus>> => {
          for (;;) {
            const item = sub.queue.shift();
            if (item !== undefined) return { value: item, done: false };
            if (this.#ended) {
              this.#subscribers.delete(sub);
              return { value: undefined, done: true };
            }
            await new Promise<void>((resolve) => {
              sub.wake = resolve;
            });
          }
        };
        return {
          next,
          return: () => {
            this.#subscribers.delete(sub);
            return Promise.resolve({ value: undefined, done: true });
          },
        };
      },
    };
  }
}
