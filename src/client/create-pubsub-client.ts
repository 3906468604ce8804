/**
 * The one implementation of the pubsub client lifecycle, shared by every transport (gRPC,
 * same-process delegate, NATS). It follows the reference client (Materialize `rpc.rs`
 * `GrpcPubSubClient::reconnect_to_server` and `SubscriptionTracker`) and goes further where
 * docs/architecture.md "Client" says so:
 *
 * - Connecting never blocks the caller: `createPubSubClient` returns at once and one loop
 *   connects in the background: attempt (timeout `persist_pubsub_connect_attempt_timeout_ms`),
 *   on failure wait a jittered exponential backoff from `initialConnectBackoffMs` capped at
 *   `persist_pubsub_connect_max_backoff_ms`; after an established connection fails wait
 *   `persist_pubsub_reconnect_backoff_ms` (jittered) before the next attempt.
 * - After every (re)connect every live subscription is re-sent with its resume seqno, then one
 *   `resync` event lists the subscribed shards so the caller catches each up from Consensus.
 * - GOAWAY (a draining broker, `ConnectOptions.onGoaway`): make-before-break. The next
 *   connection is opened without backoff, after a delay uniform in
 *   `[0, persist_pubsub_goaway_reconnect_jitter_ms]` (if that attempt fails, the connect backoff
 *   applies). Until it is up the old connection still carries everything; then both receive
 *   (a diff's second copy is dropped and counted) and every push goes on both, until the broker
 *   ends the old one or `persist_pubsub_goaway_overlap_ms` passes. Subscriptions go to the new
 *   one with their resume seqno and no `resync` follows while the old one was still up (nothing
 *   moved unseen); a `resume_unavailable` gap from the new one is then ignored (counted): a
 *   restarted broker holds no ring yet, and the old connection carried the shard. The status
 *   stays `connected` while a connection delivers (`draining: true` until the next one is up,
 *   then `reason: 'goaway'`), so `connected` still means a push is sent;
 *   `persist_pubsub_client_goaway_handovers_total{outcome}` counts the moves.
 * - Pushes while disconnected (or disabled, or with `persist_pubsub_client_sender_buffer_bytes`
 *   already waiting for the wire) are dropped and counted.
 * - Flags are read live: turning `persist_pubsub_client_enabled` off closes the stream
 *   synchronously inside `Flags.set` (status `disabled`); turning it on wakes the loop, which
 *   reconnects at once and resubscribes. `persist_pubsub_push_diff_enabled` gates `push`.
 * - Jitter: a delay `d` becomes uniform in `[d/2, d]`, so a broker restart does not bring every
 *   client back in the same millisecond.
 */
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { toShardId } from '../protocol/index.js';
import { type Clock, systemClock, type Timer } from '../util/index.js';
import { DuplicateFilter } from './duplicate-filter.js';
import { ClientError } from './errors.js';
import { EventQueue } from './event-queue.js';
import { createFlags, type Flags, type PersistFlags } from './flags.js';
import { clientMetrics } from './metrics.js';
import {
  acquireSubscription,
  type ConnectionStatus,
  type PubSubClient,
  type RefcountedSubscription,
} from './pubsub-client.js';
import { StatusFeed } from './status-feed.js';
import type { InboundMessage, PubSubConnection, PubSubTransport } from './transport.js';

/** The first retry after a failed connect attempt, before doubling. */
export const DEFAULT_INITIAL_CONNECT_BACKOFF_MS = 100;

export interface PubSubClientOptions {
  /** Runtime flags, read live. @default createFlags() (all defaults) */
  flags?: Flags | undefined;
  logger?: Logger | undefined;
  /** Metrics go here. @default a new Registry */
  registry?: Registry | undefined;
  /** First backoff after a failed connect attempt, in ms; doubles up to the max. @default 100 */
  initialConnectBackoffMs?: number | undefined;
  /**
   * Wall time (status `sinceMs`, push timestamps) and the timers of the loop: connect attempt
   * timeouts and backoff sleeps, all unref'd. @default systemClock
   */
  clock?: Clock | undefined;
  /** Uniform in [0, 1), for jitter. @default Math.random */
  random?: (() => number) | undefined;
  /**
   * Whether a flag change needs a new connection (the transport reads flags when it
   * connects, e.g. the same-process delegate switch). The reconnect is immediate.
   */
  reconnectOn?:
    | ((next: Readonly<PersistFlags>, previous: Readonly<PersistFlags>) => boolean)
    | undefined;
  /**
   * Whether this client sets `persist_pubsub_client_connected`. False for one broker of a
   * broker set (`createBrokerSetPubSubClient`), which reports the set's overall state there
   * and each broker's under `persist_pubsub_client_broker_connected`. @default true
   */
  reportConnected?: boolean | undefined;
}

interface Subscription extends RefcountedSubscription {
  /** The broker refused this shard: not re-sent on reconnect, its pushes not sent. */
  refused: boolean;
  /** The broker refused this shard's pushes only (the token may not publish to it): not sent. */
  pushRefused: boolean;
}

const firstOf = <T>(values: IterableIterator<T>): T | undefined => values.next().value;

/** Jitters `delayMs` to uniform in `[delayMs / 2, delayMs]`. */
export function jitterMs(delayMs: number, random: () => number): number {
  return Math.round(delayMs * (0.5 + 0.5 * random()));
}

/** The backoff before connect attempt `failures + 1`, un-jittered. */
export function connectBackoffMs(failures: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.max(0, Math.min(failures - 1, 40)));
}

export function createPubSubClient(
  transport: PubSubTransport,
  options: PubSubClientOptions = {},
): PubSubClient {
  const flags = options.flags ?? createFlags();
  const initialBackoffMs = options.initialConnectBackoffMs ?? DEFAULT_INITIAL_CONNECT_BACKOFF_MS;
  if (!Number.isFinite(initialBackoffMs) || initialBackoffMs < 0) {
    throw new ClientError('invalid_argument', 'initialConnectBackoffMs must be a number >= 0', {
      field: 'initialConnectBackoffMs',
    });
  }
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const log = options.logger?.child({ component: 'pubsub-client' });
  const m = clientMetrics(options.registry ?? new Registry());
  // The label follows the transport's current kind (a broker transport may switch between the
  // same-process delegate and gRPC); `connected` is reset under the kind it was set with.
  let kind = transport.kind;
  const reportConnected = options.reportConnected ?? true;
  const setConnected = (value: 0 | 1): void => {
    if (reportConnected) m.connected.set({ transport: kind }, value);
  };
  setConnected(0);

  const subs = new Map<string, Subscription>();
  const feed = new StatusFeed(
    flags.get().persist_pubsub_client_enabled ? { state: 'idle' } : { state: 'disabled' },
  );
  const events = new EventQueue(
    () => flags.get().persist_pubsub_client_receiver_channel_size,
    () => m.receiveLagged.inc({ transport: kind }),
  );
  let current: PubSubConnection | undefined;
  /**
   * Connections the broker sent GOAWAY on, still open: they receive and push next to `current`
   * until the broker ends them or `persist_pubsub_goaway_overlap_ms` after the new one is up.
   */
  const draining = new Map<PubSubConnection, { overlapTimer: Timer | undefined }>();
  /** Recognises a diff's second copy while `draining` is not empty; a new one per handover. */
  let overlapSeen = new DuplicateFilter();
  let closed = false;
  let connections = 0;
  /** Wakes the loop from a backoff sleep or a disabled wait. */
  let wake: (() => void) | undefined;
  /** Ends the live connection (flag off, reconfigured, close). */
  let disconnect: ((why: 'disabled' | 'closed') => void) | undefined;
  let attemptAbort: AbortController | undefined;
  /** Set when flags changed the transport: the next attempt starts at once, no backoff. */
  let reconfigured = false;

  const setStatus = (status: ConnectionStatus): void => {
    log?.debug({ status }, `pubsub connection ${status.state}`);
    feed.publish(status);
  };
  /**
   * The loop's `connecting` / `backoff` while a GOAWAY'd connection still delivers: the client
   * is still connected (status `connected`, `draining: true`), so it is held back and published
   * only if that connection ends before the next one is up.
   */
  let heldStatus: ConnectionStatus | undefined;
  const setLoopStatus = (status: ConnectionStatus): void => {
    if (current === undefined && draining.size > 0) heldStatus = status;
    else setStatus(status);
  };

  const resumeOf = (sub: Subscription): bigint | undefined =>
    typeof sub.resume === 'function' ? sub.resume() : sub.resume;

  /** The per-message counters' cells under the current `kind` (no label work per message). */
  const cellsFor = (transportKind: string) => ({
    kind: transportKind,
    pushSent: m.callSucceeded.cell({ transport: transportKind, call: 'push' }),
    pushBytes: m.callBytesSent.cell({ transport: transportKind, call: 'push' }),
    receivedPush: m.received.cell({ transport: transportKind, call: 'push' }),
    receivedGap: m.received.cell({ transport: transportKind, call: 'gap' }),
    receivedUnknown: m.received.cell({ transport: transportKind, call: 'unknown' }),
    goawayDuplicates: m.goawayDuplicates.cell({ transport: transportKind }),
  });
  let cells = cellsFor(kind);

  const count = (call: 'push' | 'subscribe' | 'unsubscribe', sent: number | false): boolean => {
    if (sent === false) {
      m.callFailed.inc({ transport: kind, call });
      return false;
    }
    if (call === 'push') {
      cells.pushSent.value++;
      cells.pushBytes.value += sent;
      return true;
    }
    m.callSucceeded.inc({ transport: kind, call });
    m.callBytesSent.inc({ transport: kind, call }, sent);
    return true;
  };

  /** The handover's old connection is gone (the broker ended it, the overlap passed, close). */
  const retire = (conn: PubSubConnection): void => {
    const entry = draining.get(conn);
    if (entry === undefined) return;
    draining.delete(conn);
    entry.overlapTimer?.cancel();
    conn.close();
    if (draining.size === 0) overlapSeen = new DuplicateFilter();
    if (draining.size > 0 || current !== undefined) return;
    setConnected(0);
    if (heldStatus !== undefined && !closed) setStatus(heldStatus);
    heldStatus = undefined;
  };
  /** Close, disable, reconfigure: every old connection goes, and the held status with them. */
  const retireAll = (): void => {
    heldStatus = undefined;
    for (const conn of [...draining.keys()]) retire(conn);
  };

  const onMessage = (conn: PubSubConnection, msg: InboundMessage): void => {
    if (conn !== current && !draining.has(conn)) return;
    if (msg.kind === 'unknown') {
      cells.receivedUnknown.value++;
      return;
    }
    if (msg.kind === 'refused') {
      // Rare (once per refused shard): the labelled counter, no cell.
      m.received.inc({ transport: kind, call: 'refused' });
      const sub = subs.get(msg.shardId);
      // A token's scope refuses the one call it names (a token may subscribe but not publish,
      // or the other way round); any other refusal is of the shard, for both.
      const scoped = msg.reason === 'permission_denied';
      const refusesSubscribe = !scoped || msg.call !== 'push';
      const refusesPush = !scoped || msg.call !== 'subscribe';
      // Once per subscription: pushes in flight may bring more notices for the same shard.
      if (
        sub === undefined ||
        ((!refusesSubscribe || sub.refused) && (!refusesPush || sub.pushRefused))
      ) {
        return;
      }
      if (refusesSubscribe) sub.refused = true;
      if (refusesPush) sub.pushRefused = true;
      m.shardsRefused.inc({ transport: kind, reason: msg.reason });
      log?.warn(
        {
          shardId: msg.shardId,
          reason: msg.reason,
          call: msg.call,
          broker: { detail: msg.detail },
        },
        refusesSubscribe
          ? 'the broker refused this shard: pubsub is off for it, its readers poll'
          : "the broker refused this shard's pushes: its commits reach other readers by polling",
      );
      const { bytes: _bytes, ...event } = msg;
      events.push(event);
      return;
    }
    if (msg.kind === 'diff') cells.receivedPush.value++;
    else cells.receivedGap.value++;
    // A diff for a shard we no longer follow (in flight across an unsubscribe) is not ours.
    if (!subs.has(msg.shardId)) return;
    if (draining.size > 0) {
      if (msg.kind === 'diff' && !overlapSeen.firstSeen(msg.shardId, msg.seqno)) {
        cells.goawayDuplicates.value++;
        return;
      }
      // A restarted broker has no ring yet; the old connection still carries the shard.
      if (msg.kind === 'gap' && msg.reason === 'resume_unavailable' && conn === current) {
        m.goawayResumeGapsIgnored.inc({ transport: kind });
        return;
      }
    }
    // The inbound diff is the event (its `bytes` rides along): no copy per diff.
    if (msg.kind === 'diff') {
      events.push(msg);
    } else {
      const { bytes: _bytes, ...gap } = msg;
      events.push(gap);
    }
  };

  const sleepOrWake = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      // Unref'd: a background loop, nothing awaits it but `close`, which wakes it.
      const t: Timer = clock.setTimer(done, ms);
      function done(): void {
        t.cancel();
        wake = undefined;
        resolve();
      }
      wake = done;
    });

  const loop = async (): Promise<void> => {
    let failures = 0;
    /** Set from a GOAWAY until the next connection is up: statuses say `reason: 'goaway'`. */
    let handover = false;
    while (!closed) {
      const goawayReason = handover ? { reason: 'goaway' as const } : {};
      const f = flags.get();
      if (!f.persist_pubsub_client_enabled) {
        if (feed.current.state !== 'disabled') setStatus({ state: 'disabled' });
        await new Promise<void>((resolve) => {
          wake = () => {
            wake = undefined;
            resolve();
          };
        });
        failures = 0;
        continue;
      }
      const attempt = failures + 1;
      setLoopStatus({ state: 'connecting', attempt, ...goawayReason });
      kind = transport.kind;
      if (cells.kind !== kind) cells = cellsFor(kind);
      m.connectAttempts.inc({ transport: kind });
      const ac = new AbortController();
      attemptAbort = ac;
      const timer = clock.setTimer(
        () =>
          ac.abort(
            new ClientError(
              'connect_timeout',
              `connect attempt timed out after ${f.persist_pubsub_connect_attempt_timeout_ms} ms`,
            ),
          ),
        f.persist_pubsub_connect_attempt_timeout_ms,
      );
      let ended!: (why: Error | undefined | 'disabled' | 'closed') => void;
      const endedP = new Promise<Error | undefined | 'disabled' | 'closed'>((resolve) => {
        ended = resolve;
      });
      let goaway!: (why: 'goaway') => void;
      const goawayP = new Promise<'goaway'>((resolve) => {
        goaway = resolve;
      });
      let conn: PubSubConnection;
      try {
        const pending: { conn?: PubSubConnection } = {};
        conn = await transport.connect({
          signal: ac.signal,
          onMessage: (msg) => {
            if (pending.conn !== undefined) onMessage(pending.conn, msg);
          },
          onClose: (err) => ended(err),
          onGoaway: () => goaway('goaway'),
        });
        pending.conn = conn;
        if (ac.signal.aborted) {
          conn.close();
          throw ac.signal.reason;
        }
      } catch (err) {
        timer.cancel();
        attemptAbort = undefined;
        if (closed || !flags.get().persist_pubsub_client_enabled) continue;
        if (reconfigured) {
          reconfigured = false;
          continue;
        }
        failures++;
        m.errors.inc({ transport: kind });
        const base = connectBackoffMs(
          failures,
          initialBackoffMs,
          flags.get().persist_pubsub_connect_max_backoff_ms,
        );
        const delayMs = jitterMs(base, random);
        const error = err instanceof Error ? err.message : String(err);
        log?.debug({ err, attempt }, 'pubsub connect attempt failed');
        setLoopStatus({ state: 'backoff', attempt, delayMs, error, ...goawayReason });
        await sleepOrWake(delayMs);
        continue;
      }
      timer.cancel();
      attemptAbort = undefined;
      reconfigured = false;
      failures = 0;
      connections++;
      current = conn;
      disconnect = (why) => {
        // Synchronous: from here on nothing is sent or delivered on this connection.
        if (current === conn) current = undefined;
        conn.close();
        setConnected(0);
        ended(why);
      };
      setConnected(1);
      m.connectionsEstablished.inc({ transport: kind });
      log?.debug({ transport: kind }, 'pubsub connected');
      // Make-before-break held: the old connection is still up, so nothing moved unseen.
      const overlapped = draining.size > 0;
      if (handover) {
        m.goawayHandovers.inc({
          transport: kind,
          outcome: overlapped ? 'overlapped' : 'broken',
        });
      }
      heldStatus = undefined;
      setStatus({ state: 'connected', sinceMs: clock.nowMs(), connections, ...goawayReason });
      handover = false;
      const live: string[] = [];
      for (const [shardId, sub] of subs) {
        if (sub.refused) continue;
        live.push(shardId);
        count('subscribe', conn.subscribe(shardId, resumeOf(sub)));
      }
      if (overlapped) {
        const overlapMs = flags.get().persist_pubsub_goaway_overlap_ms;
        for (const [old, entry] of draining) {
          // Cancelled by `retire` if the broker ends it first.
          entry.overlapTimer ??= clock.setTimer(() => retire(old), overlapMs);
        }
      } else {
        events.push({ kind: 'resync', shardIds: live, reconnect: connections > 1 });
      }

      const end = await Promise.race([endedP, goawayP]);
      if (end === 'goaway' && current === conn && !closed) {
        // The broker is draining: keep this connection (receiving, pushing) and open the next
        // one at once, after a small jitter, no backoff.
        current = undefined;
        disconnect = undefined;
        draining.set(conn, { overlapTimer: undefined });
        void endedP.then(() => retire(conn));
        handover = true;
        failures = 0;
        const delayMs = Math.round(
          random() * flags.get().persist_pubsub_goaway_reconnect_jitter_ms,
        );
        log?.debug({ transport: kind, delayMs }, 'pubsub GOAWAY: moving to a new connection');
        const was = feed.current;
        setStatus({
          state: 'connected',
          sinceMs: was.state === 'connected' ? was.sinceMs : clock.nowMs(),
          connections,
          draining: true,
        });
        setLoopStatus({
          state: 'backoff',
          attempt: 0,
          delayMs,
          error: 'GOAWAY: the broker is draining',
          reason: 'goaway',
        });
        await sleepOrWake(delayMs);
        continue;
      }
      const why = end === 'goaway' ? await endedP : end;
      if (current === conn) current = undefined;
      disconnect = undefined;
      conn.close();
      setConnected(0);
      if (why === 'closed' || why === 'disabled' || closed) continue;
      m.errors.inc({ transport: kind });
      const delayMs = jitterMs(flags.get().persist_pubsub_reconnect_backoff_ms, random);
      log?.debug({ err: why }, 'pubsub connection lost');
      setStatus({
        state: 'backoff',
        attempt: 0,
        delayMs,
        error: why === undefined ? 'connection ended' : why.message,
      });
      await sleepOrWake(delayMs);
    }
    retireAll();
    setStatus({ state: 'closed' });
    feed.end();
    events.close();
  };

  const unsubscribeFlags = flags.onChange((next, prev) => {
    if (next.persist_pubsub_client_enabled === prev.persist_pubsub_client_enabled) {
      if (next.persist_pubsub_client_enabled && options.reconnectOn?.(next, prev)) {
        log?.debug('pubsub reconnecting: transport flags changed');
        // 'disabled' ends the connection without a backoff; the loop reconnects at once.
        reconfigured = true;
        attemptAbort?.abort(new ClientError('closed', 'pubsub transport reconfigured'));
        disconnect?.('disabled');
        retireAll();
        wake?.();
      }
      return;
    }
    if (!next.persist_pubsub_client_enabled) {
      log?.debug('pubsub client disabled by flag');
      attemptAbort?.abort(new ClientError('closed', 'pubsub client disabled'));
      disconnect?.('disabled');
      retireAll();
      if (current === undefined && feed.current.state !== 'disabled') {
        setStatus({ state: 'disabled' });
      }
      wake?.();
    } else {
      log?.debug('pubsub client enabled by flag');
      wake?.();
    }
  });

  const done = loop().catch((err: unknown) => {
    log?.error({ err }, 'pubsub client loop failed');
    feed.end();
    events.close();
  });

  const client: PubSubClient = {
    get transport() {
      return kind;
    },
    get status() {
      return feed.current;
    },
    push(shardId, seqno, diff, originTimestampMs) {
      const f = flags.get();
      // During a GOAWAY handover the old connection (still up) is the target until the new
      // one is; then both are, so a reader still on either gets the diff.
      const primary = current ?? (draining.size > 0 ? firstOf(draining.keys()) : undefined);
      let reason: string | undefined;
      if (closed) reason = 'closed';
      else if (!f.persist_pubsub_client_enabled) reason = 'disabled';
      else if (!f.persist_pubsub_push_diff_enabled) reason = 'push_disabled';
      else if (primary === undefined) reason = 'disconnected';
      else if (subs.get(shardId)?.pushRefused === true) reason = 'refused';
      else if (primary.bufferedBytes() >= f.persist_pubsub_client_sender_buffer_bytes) {
        reason = 'queue_full';
      }
      if (reason !== undefined || primary === undefined) {
        m.pushesDropped.inc({ reason: reason ?? 'disconnected' });
        return false;
      }
      const at = originTimestampMs ?? clock.nowMs();
      const sent = count('push', primary.push(shardId, seqno, diff, at));
      if (draining.size > 0) {
        for (const other of draining.keys()) {
          if (other !== primary) count('push', other.push(shardId, seqno, diff, at));
        }
      }
      return sent;
    },
    subscribe(shardId, subscribeOptions = {}) {
      // The one shard id rule (src/protocol): a ShardIdError, before anything is sent.
      toShardId(shardId);
      if (closed) throw new ClientError('closed', 'the pubsub client is closed');
      return acquireSubscription(subs, shardId, subscribeOptions, {
        create: () => ({
          refs: 0,
          resume: subscribeOptions.resumeAfterSeqno,
          refused: false,
          pushRefused: false,
        }),
        onFirst(sub) {
          if (current !== undefined) count('subscribe', current.subscribe(shardId, resumeOf(sub)));
          for (const old of draining.keys()) {
            count('subscribe', old.subscribe(shardId, resumeOf(sub)));
          }
        },
        onLast(sub) {
          if (closed || sub.refused) return;
          if (current !== undefined) count('unsubscribe', current.unsubscribe(shardId));
          for (const old of draining.keys()) count('unsubscribe', old.unsubscribe(shardId));
        },
      });
    },
    subscribedShards: () => [...subs.keys()],
    events: () => events,
    eventBatches: () => events.batches(),
    onEvent: (listener) => events.sink(listener),
    statusChanges: () => feed.iterate(),
    async close() {
      if (!closed) {
        closed = true;
        unsubscribeFlags();
        attemptAbort?.abort(new ClientError('closed', 'pubsub client closed'));
        disconnect?.('closed');
        retireAll();
        wake?.();
      }
      await done;
    },
  };
  return client;
}
