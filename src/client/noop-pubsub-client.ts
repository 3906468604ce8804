/**
 * The pubsub client for "no pubsub": pushes go nowhere, subscriptions are refcounted but never
 * receive anything, and readers rely on polling alone. A push here was never meant to be sent,
 * so nothing counts it: `persist_pubsub_client_pushes_dropped_total` stays silent in a
 * polling-only process, and an alert on drops fires only where pubsub is configured.
 */
import { Registry } from 'prom-client';
import { toShardId } from '../protocol/index.js';
import { ClientError } from './errors.js';
import { EventQueue } from './event-queue.js';
import { clientMetrics } from './metrics.js';
import { createSubscriptionToken, type PubSubClient } from './pubsub-client.js';
import { StatusFeed } from './status-feed.js';

export interface NoopPubSubClientOptions {
  /** Metrics go here. @default a new Registry */
  registry?: Registry | undefined;
}

export function createNoopPubSubClient(options: NoopPubSubClientOptions = {}): PubSubClient {
  // Registers the client metrics (at zero) so dashboards see the same series everywhere.
  clientMetrics(options.registry ?? new Registry());
  const refs = new Map<string, number>();
  const feed = new StatusFeed({ state: 'disabled' });
  const events = new EventQueue(
    () => 1,
    () => {},
  );
  let closed = false;
  return {
    transport: 'none',
    get status() {
      return feed.current;
    },
    push() {
      return false;
    },
    subscribe(shardId) {
      // The one shard id rule (src/protocol): a ShardIdError, before anything is sent.
      toShardId(shardId);
      if (closed) throw new ClientError('closed', 'the pubsub client is closed');
      refs.set(shardId, (refs.get(shardId) ?? 0) + 1);
      return createSubscriptionToken(shardId, () => {
        const n = (refs.get(shardId) ?? 1) - 1;
        if (n === 0) refs.delete(shardId);
        else refs.set(shardId, n);
      });
    },
    subscribedShards: () => [...refs.keys()],
    events: () => events,
    statusChanges: () => feed.iterate(),
    async close() {
      if (closed) return;
      closed = true;
      feed.publish({ state: 'closed' });
      feed.end();
      events.close();
    },
  };
}
