/**
 * Who is subscribed to what: shard → set of connections, and connection → set of shards.
 * Subscribe and unsubscribe are idempotent and O(1); removing a connection costs its own
 * subscriptions only; a shard entry disappears with its last subscriber (as the reference
 * server's `connections by shard` map). No network, no clock: unit-tested on its own.
 */
export interface SubscriptionTable<C> {
  /** Adds `conn` to `shardId`. Returns false if it was already subscribed (idempotent). */
  subscribe(conn: C, shardId: string): boolean;
  /** Removes `conn` from `shardId`. Returns false if it was not subscribed (idempotent). */
  unsubscribe(conn: C, shardId: string): boolean;
  /** Removes every subscription of `conn`; returns the shards it held. */
  removeConnection(conn: C): string[];
  /** The subscribers of a shard (live view; do not mutate), or undefined if none. */
  subscribers(shardId: string): ReadonlySet<C> | undefined;
  /** The shards a connection is subscribed to (live view), or undefined if none. */
  shardsOf(conn: C): ReadonlySet<string> | undefined;
  isSubscribed(conn: C, shardId: string): boolean;
  /** Shards with at least one subscriber. */
  readonly shardCount: number;
  /** Subscriptions across all connections. */
  readonly subscriptionCount: number;
  /** Iterates shards with their subscriber counts (for admin listings). */
  shards(): IterableIterator<[string, ReadonlySet<C>]>;
}

export function createSubscriptionTable<C>(): SubscriptionTable<C> {
  const byShard = new Map<string, Set<C>>();
  const byConn = new Map<C, Set<string>>();
  let subscriptionCount = 0;

  return {
    subscribe(conn, shardId) {
      let subs = byShard.get(shardId);
      if (subs === undefined) {
        subs = new Set();
        byShard.set(shardId, subs);
      } else if (subs.has(conn)) {
        return false;
      }
      subs.add(conn);
      let mine = byConn.get(conn);
      if (mine === undefined) {
        mine = new Set();
        byConn.set(conn, mine);
      }
      mine.add(shardId);
      subscriptionCount++;
      return true;
    },
    unsubscribe(conn, shardId) {
      const subs = byShard.get(shardId);
      if (subs === undefined || !subs.delete(conn)) return false;
      if (subs.size === 0) byShard.delete(shardId);
      const mine = byConn.get(conn);
      if (mine !== undefined) {
        mine.delete(shardId);
        if (mine.size === 0) byConn.delete(conn);
      }
      subscriptionCount--;
      return true;
    },
    removeConnection(conn) {
      const mine = byConn.get(conn);
      if (mine === undefined) return [];
      byConn.delete(conn);
      const shards = [...mine];
      for (const shardId of shards) {
        const subs = byShard.get(shardId);
        if (subs?.delete(conn)) {
          subscriptionCount--;
          if (subs.size === 0) byShard.delete(shardId);
        }
      }
      return shards;
    },
    subscribers(shardId) {
      return byShard.get(shardId);
    },
    shardsOf(conn) {
      return byConn.get(conn);
    },
    isSubscribed(conn, shardId) {
      return byShard.get(shardId)?.has(conn) ?? false;
    },
    get shardCount() {
      return byShard.size;
    },
    get subscriptionCount() {
      return subscriptionCount;
    },
    shards() {
      return byShard.entries();
    },
  };
}
