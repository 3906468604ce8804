/**
 * The pubsub client contract: what every transport (gRPC to the broker, the same-process
 * delegate, NATS, none) gives the rest of the SDK. It follows the reference client
 * (Materialize `rpc.rs` `PubSubSender`/`PubSubReceiver`): pushes are fire-and-forget and may be
 * lost (Consensus has every version), a subscription is a refcounted token, and the received
 * stream carries diffs for subscribed shards. We add gap notices, resume seqnos and an explicit
 * "resync" event after every (re)connect so the caller can catch each subscribed shard up from
 * Consensus once instead of waiting for its poll timer.
 */

/** A diff received for a subscribed shard. */
export interface ReceivedDiff {
  kind: 'diff';
  shardId: string;
  seqno: bigint;
  /** The encoded diff, exactly as the writer pushed it. */
  diff: Uint8Array;
  /** When the writer committed this version, ms since the Unix epoch, if the writer sent it. */
  originTimestampMs: number | undefined;
  /** When the broker forwarded it (its stamp on the message), ms since the Unix epoch. */
  brokerTimestampMs: number | undefined;
}

/**
 * Some diffs of a shard will not arrive (the broker dropped them for a slow consumer, a resume
 * reached beyond its ring, forwarding is off, or this client's own receive queue overflowed).
 * The caller should read Consensus for that shard now.
 */
export interface ReceivedGap {
  kind: 'gap';
  shardId: string;
  reason: 'slow_consumer' | 'resume_unavailable' | 'not_forwarding' | 'client_lagged' | 'unknown';
  /** The lowest seqno that may be missing, if known. */
  fromSeqno: bigint | undefined;
}

/**
 * The broker refused this client's subscription to (or push of) a shard and kept the stream
 * open for every other shard (extension): its shard id breaks the broker's rule (e.g. a broker
 * with a smaller `--max-shard-id-bytes`), the connection holds the broker's limit of
 * subscriptions, or the bearer token's scope does not cover the shard (`permission_denied`,
 * for the one `call` named). The client stops using pubsub for that shard (it is not re-sent on
 * reconnect; readers of it poll) until the shard is subscribed anew; a `permission_denied` of a
 * push stops only its pushes, the subscription stays.
 */
export interface ReceivedRefusal {
  kind: 'refused';
  shardId: string;
  reason: 'invalid_shard_id' | 'subscription_limit' | 'permission_denied' | 'unknown';
  /** The broker's explanation, for logs. */
  detail: string;
  /** The refused call; `unknown` (a broker that does not say): taken as both. */
  call: 'subscribe' | 'push' | 'unknown';
}

/**
 * The connection was (re)established and every live subscription re-sent. Shards in `shardIds`
 * may have moved while the stream was down: fetch each from Consensus once.
 */
export interface ReceivedResync {
  kind: 'resync';
  shardIds: string[];
  /** False for the first connection of this client. */
  reconnect: boolean;
}

export type PubSubEvent = ReceivedDiff | ReceivedGap | ReceivedRefusal | ReceivedResync;

/**
 * The connection state, one tagged union. `disabled`: the runtime flag turned the client off
 * (no stream; readers poll). `backoff`: waiting `delayMs` before the next attempt.
 *
 * A GOAWAY handover (the broker is draining): `connected` with `draining: true` from the
 * GOAWAY until the next connection is up (the old one still carries diffs both ways meanwhile;
 * the next one is being opened, without backoff), then `connected` with `reason: 'goaway'`, the
 * connection that replaced it. If the old one ends first, `connecting` / `backoff` carry
 * `reason: 'goaway'` until the next one is up.
 */
export type ConnectionStatus =
  | { state: 'idle' }
  | { state: 'disabled' }
  | { state: 'connecting'; attempt: number; reason?: 'goaway' }
  | {
      state: 'connected';
      sinceMs: number;
      connections: number;
      reason?: 'goaway';
      /** The broker sent GOAWAY on this connection; the next one is being opened. */
      draining?: true;
    }
  | { state: 'backoff'; attempt: number; delayMs: number; error: string; reason?: 'goaway' }
  | { state: 'closed' };

export interface SubscribeOptions {
  /**
   * The seqno the caller already has; on every (re)subscribe the broker is asked to replay newer
   * diffs it still holds. A function is called at each (re)subscribe for the current value.
   */
  resumeAfterSeqno?: bigint | (() => bigint | undefined) | undefined;
}

/**
 * A live subscription. Tokens for one shard share one underlying subscription; it is
 * unsubscribed when the last token is released. `release()` is idempotent.
 */
export interface SubscriptionToken extends Disposable {
  readonly shardId: string;
  readonly released: boolean;
  release(): void;
}

/** A token whose first `release()` (or dispose) calls `onRelease`; later ones do nothing. */
export function createSubscriptionToken(shardId: string, onRelease: () => void): SubscriptionToken {
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    onRelease();
  };
  return {
    shardId,
    get released() {
      return released;
    },
    release,
    [Symbol.dispose]: release,
  };
}

/** One shard's subscription in a client's table: its token count and resume seqno. */
export interface RefcountedSubscription {
  refs: number;
  resume: SubscribeOptions['resumeAfterSeqno'];
}

/**
 * Takes a reference on `shardId`'s subscription in `subs`: the first creates it (`create`, then
 * `onFirst` once it is in the table), a later `resumeAfterSeqno` replaces the earlier, and the
 * release of the last token removes it from the table and calls `onLast`.
 */
export function acquireSubscription<S extends RefcountedSubscription>(
  subs: Map<string, S>,
  shardId: string,
  options: SubscribeOptions,
  hooks: { create(): S; onFirst(sub: S): void; onLast(sub: S): void },
): SubscriptionToken {
  let sub = subs.get(shardId);
  if (sub === undefined) {
    const created = hooks.create();
    sub = created;
    subs.set(shardId, created);
    hooks.onFirst(created);
  } else if (options.resumeAfterSeqno !== undefined) {
    sub.resume = options.resumeAfterSeqno;
  }
  sub.refs++;
  const owned = sub;
  return createSubscriptionToken(shardId, () => {
    owned.refs--;
    if (owned.refs > 0 || subs.get(shardId) !== owned) return;
    subs.delete(shardId);
    hooks.onLast(owned);
  });
}

export interface PubSubClient {
  /** Which transport this is: a metric label and a log field. */
  readonly transport: string;
  /** The current connection status. */
  readonly status: ConnectionStatus;
  /**
   * Sends a diff the caller just committed. Never blocks and never throws on transport failure:
   * returns false if the diff was dropped (disconnected, disabled, send queue full), counted.
   * @param originTimestampMs commit time, ms since the Unix epoch; carried to readers for the
   * end-to-end latency metric.
   */
  push(shardId: string, seqno: bigint, diff: Uint8Array, originTimestampMs?: number): boolean;
  /** Subscribes to a shard (or takes another reference to the live subscription). */
  subscribe(shardId: string, options?: SubscribeOptions): SubscriptionToken;
  /** Shard ids with a live subscription. */
  subscribedShards(): string[];
  /**
   * The received events. One consumer; the iterable ends when the client closes. Bounded: when
   * the consumer falls behind, diffs are dropped, counted and replaced by a `gap` per shard.
   */
  events(): AsyncIterable<PubSubEvent>;
  /**
   * The same events a batch at a time: each batch is everything received since the last one
   * (a network read's worth), so a consumer handles a turn's diffs in one step. The same one
   * consumer as `events()` (use one or the other). Optional: without it, consume `events()`.
   */
  eventBatches?(): AsyncIterable<readonly PubSubEvent[]>;
  /**
   * The same events handed to `listener` synchronously, each as it arrives (inside the
   * transport's read: no queue, no promise, never a drop), until the returned function is called
   * or the client closes. For a consumer that never waits and never throws (the persist client
   * applies each diff at once). The same one consumer as `events()`. Optional.
   */
  onEvent?(listener: (event: PubSubEvent) => void): () => void;
  /** Every status change from now on (the current one first); ends when the client closes. */
  statusChanges(): AsyncIterable<ConnectionStatus>;
  /** Stops reconnecting, ends the stream and both iterables. Idempotent. */
  close(): Promise<void>;
}
