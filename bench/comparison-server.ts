/**
 * What the broker bench's comparison servers share (`broker-floor-server.ts` on bare
 * `node:http2`, `broker-grpcjs-server.ts` on grpc-js): the shard → subscribers table of their
 * bare fan-out, and their answers to `bench/broker.ts`'s `stats` and `exit` requests. Not a
 * product: no limits, no queues, no metrics.
 */

/** Which peers (streams, calls) are subscribed to each shard, and how many subscriptions. */
export interface SubscriberTable<P> {
  /** Idempotent per shard and peer. */
  subscribe(shardId: string, peer: P): void;
  unsubscribe(shardId: string, peer: P): void;
  /** The subscribers of a shard, if it has had any. */
  of(shardId: string): ReadonlySet<P> | undefined;
  readonly subscriptions: number;
}

export function createSubscriberTable<P>(): SubscriberTable<P> {
  const subscribers = new Map<string, Set<P>>();
  let subscriptions = 0;
  return {
    subscribe(shardId, peer) {
      let set = subscribers.get(shardId);
      if (set === undefined) {
        set = new Set();
        subscribers.set(shardId, set);
      }
      if (!set.has(peer)) subscriptions++;
      set.add(peer);
    },
    unsubscribe(shardId, peer) {
      if (subscribers.get(shardId)?.delete(peer) === true) subscriptions--;
    },
    of: (shardId) => subscribers.get(shardId),
    get subscriptions() {
      return subscriptions;
    },
  };
}

/**
 * Answers `stats` with this process's CPU time, RSS, heap and `table`'s subscription count (no
 * drops: nothing is queued), and `exit` by `beforeExit()` and exiting.
 */
export function answerBenchRequests(
  table: SubscriberTable<unknown>,
  beforeExit: () => void = () => {},
): void {
  process.on('message', (m: { type: string }) => {
    if (m.type === 'stats') {
      process.send?.({
        type: 'stats',
        cpu: process.cpuUsage(),
        rss: process.memoryUsage().rss,
        heapUsed: process.memoryUsage().heapUsed,
        subscriptions: table.subscriptions,
        dropped: 0,
      });
    } else if (m.type === 'exit') {
      beforeExit();
      process.exit(0);
    }
  });
}
