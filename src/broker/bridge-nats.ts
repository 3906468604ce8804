/**
 * Brokers bridged by NATS (`persist-pubsub broker --bridge nats://…`): each broker is an edge
 * for its local gRPC clients and NATS carries diffs between brokers, so gRPC-only clients (the
 * reference's included) on different hosts see each other's diffs.
 *
 * Built on the broker's public surface only: a `BrokerObserver` (passed as
 * `BrokerOptions.observer`) tells the bridge which shards have local subscribers and which diffs
 * local clients pushed, and one same-process connection (`Broker.connectInProcess`) injects the
 * diffs that arrive from NATS, so the broker fans them out with its usual queues, limits and gap
 * notices.
 *
 * - Out: every diff a local client pushes is published on the shard's subject (see
 *   `src/protocol/nats-subject.ts`) as the same `ProtoPubSubMessage` bytes a gRPC subscriber receives,
 *   whether or not the shard has local subscribers (a reader may be on another broker).
 * - In: the bridge holds one NATS subscription per shard with at least one local subscriber,
 *   taken with the first and dropped with the last. A diff from NATS is pushed into the broker
 *   through the bridge's own connection, which never subscribes, so it reaches every local
 *   subscriber and is never published back (the observer skips pushes from that connection).
 * - No loops and no doubles: the NATS connection uses `noEcho` (the server never returns our own
 *   publishes) and every publish carries `Persist-Pubsub-Origin: <brokerId>`, which the bridge
 *   also checks on receipt.
 * - NATS outages: nats.js reconnects (forever, `reconnectTimeWaitMs` apart with jitter) and
 *   re-sends the subscriptions itself; publishes made meanwhile are buffered by nats.js up to
 *   its reconnect buffer, and beyond it lost. Diffs other brokers published during the outage
 *   are lost to local subscribers, so on every reconnect the bridge sends each local subscriber
 *   that understands extensions a gap notice per shard (`resume_unavailable`): our clients then
 *   read Consensus at once. Reference clients get no notice and recover by polling.
 */
import {
  connect,
  headers,
  type Msg,
  type NatsConnection,
  nuid,
  type Subscription,
} from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import {
  DEFAULT_SUBJECT_PREFIX,
  decodeMessage,
  encodeForward,
  ORIGIN_HEADER,
  parseNatsUrl,
  parseSubjectPrefix,
  shardIdOfSubject,
  shardSubject,
} from '../protocol/index.js';
import { type Clock, raceSignal, sleep, systemClock, type Timer } from '../util/index.js';
import { BrokerError } from './errors.js';
import type {
  Broker,
  BrokerObserver,
  BrokerObserverControls,
  InProcessConnection,
  ListenAddress,
  ObservedPush,
} from './types.js';

/** How long `close()` waits for NATS to take buffered publishes, in ms. */
const DRAIN_TIMEOUT_MS = 2000;
/** @default 1000 */
export const DEFAULT_BRIDGE_RECONNECT_TIME_WAIT_MS = 1000;
/** @default 5000 */
export const DEFAULT_BRIDGE_CONNECT_TIMEOUT_MS = 5000;

export interface NatsBridgeOptions {
  /** `nats://host:port` (comma-separated for several servers of one cluster). */
  url: string;
  /** Subject prefix; must match the other brokers' and NATS clients'. @default 'persist-pubsub.v1.shard' */
  subjectPrefix?: string | undefined;
  /** This broker's id in the origin header. @default a random NUID */
  brokerId?: string | undefined;
  logger?: Logger | undefined;
  /** Bridge metrics go here. @default the broker's registry (at `start`) */
  registry?: Registry | undefined;
  /** Wait between NATS reconnect attempts, in ms (nats.js adds jitter). @default 1000 */
  reconnectTimeWaitMs?: number | undefined;
  /** One NATS connect attempt, in ms. @default 5000 */
  connectTimeoutMs?: number | undefined;
  /** Message timestamps, the reconnect wait and the drain bound. @default systemClock */
  clock?: Clock | undefined;
}

/** The bridge's NATS state, one tagged value. */
export type NatsBridgeState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface NatsBridge {
  readonly brokerId: string;
  /** Pass as `BrokerOptions.observer` when creating the broker. */
  readonly observer: BrokerObserver;
  readonly state: NatsBridgeState;
  /** Shards this bridge currently holds a NATS subscription for. */
  subscribedShards(): string[];
  /**
   * Attaches to the (serving) broker and connects to NATS. Resolves once connected; rejects if
   * `signal` aborts first (the bridge then closes). Call once.
   */
  start(
    broker: Broker<ListenAddress>,
    options?: { signal?: AbortSignal | undefined },
  ): Promise<void>;
  /** Flushes what is buffered, leaves NATS and closes the broker connection. Idempotent. */
  close(): Promise<void>;
}

function positiveInt(value: unknown, field: string, fallback: number): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new BrokerError('invalid_argument', `NatsBridgeOptions.${field} must be an integer >= 1`);
  }
  return v;
}

interface BridgeMetrics {
  messages: Counter<'direction'>;
  dropped: Counter<'reason'>;
  connected: Gauge;
  reconnects: Counter;
}

function bridgeMetrics(registry: Registry): BridgeMetrics {
  return {
    messages: new Counter({
      name: 'persist_pubsub_bridge_messages_total',
      help: 'Diffs the NATS bridge published (out) or delivered to local subscribers (in).',
      labelNames: ['direction'],
      registers: [registry],
    }),
    dropped: new Counter({
      name: 'persist_pubsub_bridge_dropped_total',
      help: 'Diffs the NATS bridge did not carry, by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    reconnects: new Counter({
      name: 'persist_pubsub_bridge_reconnects_total',
      help: 'NATS reconnections of the bridge; each sends gap notices for every locally subscribed shard.',
      registers: [registry],
    }),
    connected: new Gauge({
      name: 'persist_pubsub_bridge_connected',
      help: '1 while the NATS bridge is connected to a NATS server.',
      registers: [registry],
    }),
  };
}

export function createNatsBridge(options: NatsBridgeOptions): NatsBridge {
  if (typeof options !== 'object' || options === null) {
    throw new BrokerError('invalid_argument', 'NatsBridgeOptions must be an object');
  }
  let servers: string[];
  let prefix: string;
  try {
    servers = parseNatsUrl(options.url, 'NatsBridgeOptions.url').servers;
  } catch (err) {
    throw new BrokerError('invalid_argument', (err as Error).message);
  }
  const p = parseSubjectPrefix(options.subjectPrefix ?? DEFAULT_SUBJECT_PREFIX);
  if (!p.ok) {
    throw new BrokerError('invalid_argument', `NatsBridgeOptions.subjectPrefix ${p.detail}`);
  }
  prefix = p.prefix;
  const brokerId = options.brokerId ?? nuid.next();
  if (typeof brokerId !== 'string' || !/^[\x21-\x7e]+$/.test(brokerId)) {
    throw new BrokerError(
      'invalid_argument',
      'NatsBridgeOptions.brokerId must be printable ASCII without spaces',
    );
  }
  const reconnectTimeWait = positiveInt(
    options.reconnectTimeWaitMs,
    'reconnectTimeWaitMs',
    DEFAULT_BRIDGE_RECONNECT_TIME_WAIT_MS,
  );
  const timeout = positiveInt(
    options.connectTimeoutMs,
    'connectTimeoutMs',
    DEFAULT_BRIDGE_CONNECT_TIMEOUT_MS,
  );
  const clock = options.clock ?? systemClock;
  const log = options.logger?.child({ component: 'nats-bridge', brokerId });

  let state: NatsBridgeState = 'idle';
  let nc: NatsConnection | undefined;
  let conn: InProcessConnection | undefined;
  let m: BridgeMetrics | undefined;
  let started = false;
  let closing: Promise<void> | undefined;
  /** Aborted by `close()`: ends a `start()` still waiting for its first NATS connection. */
  const closed = new AbortController();
  /** Shards with at least one local subscriber (followed from broker construction on). */
  const local = new Set<string>();
  const subs = new Map<string, Subscription>();
  let controls: BrokerObserverControls | undefined;

  const setState = (next: NatsBridgeState): void => {
    if (state === next) return;
    log?.debug({ from: state, to: next }, `nats bridge ${next}`);
    state = next;
    m?.connected.set(next === 'connected' ? 1 : 0);
  };

  const onNatsMessage = (err: Error | null, msg: Msg): void => {
    if (err !== null) {
      log?.warn({ err }, 'nats subscription error');
      return;
    }
    if (msg.headers?.get(ORIGIN_HEADER) === brokerId) {
      m?.dropped.inc({ reason: 'echo' });
      return;
    }
    const shardId = shardIdOfSubject(prefix, msg.subject);
    const push = decodeMessage(msg.data);
    if (shardId === undefined || push.kind !== 'push' || push.shardId !== shardId) {
      m?.dropped.inc({ reason: 'malformed' });
      return;
    }
    if (conn === undefined || !local.has(shardId)) {
      m?.dropped.inc({ reason: 'not_subscribed' });
      return;
    }
    try {
      conn.push(shardId, push.seqno, push.diff, push.originTimestampMs);
      m?.messages.inc({ direction: 'in' });
    } catch (cause) {
      // An id the broker refuses (charset, length) or a diff over its limit; never a crash.
      m?.dropped.inc({ reason: 'rejected' });
      log?.debug({ err: cause, shard: { id: shardId } }, 'broker refused a diff from nats');
    }
  };

  const natsSubscribe = (shardId: string): void => {
    if (nc === undefined || subs.has(shardId)) return;
    try {
      subs.set(shardId, nc.subscribe(shardSubject(prefix, shardId), { callback: onNatsMessage }));
    } catch (err) {
      log?.warn({ err, shardId }, 'nats subscribe failed');
    }
  };

  const natsUnsubscribe = (shardId: string): void => {
    const sub = subs.get(shardId);
    if (sub === undefined) return;
    subs.delete(shardId);
    try {
      sub.unsubscribe();
    } catch (err) {
      log?.debug({ err, shardId }, 'nats unsubscribe failed');
    }
  };

  const observer: BrokerObserver = {
    attached(c) {
      controls = c;
    },
    shardActive(shardId) {
      local.add(shardId);
      natsSubscribe(shardId);
    },
    shardIdle(shardId) {
      local.delete(shardId);
      natsUnsubscribe(shardId);
    },
    pushed(push: ObservedPush) {
      // Diffs that came from NATS (our own connection) are never published back.
      if (conn !== undefined && push.connId === conn.connId) return;
      if (nc === undefined || state === 'closed') {
        m?.dropped.inc({ reason: 'disconnected' });
        return;
      }
      const payload = encodeForward(push.pushDiff, clock.nowMs(), false);
      const h = headers();
      h.set(ORIGIN_HEADER, brokerId);
      try {
        nc.publish(shardSubject(prefix, push.shardId), payload, { headers: h });
        m?.messages.inc({ direction: 'out' });
      } catch (err) {
        // Over the server's max_payload, or the connection is closing.
        m?.dropped.inc({ reason: 'publish_failed' });
        log?.debug({ err, shardId: push.shardId }, 'nats publish failed');
      }
    },
  };

  const watchStatus = async (c: NatsConnection): Promise<void> => {
    for await (const s of c.status()) {
      if (s.type === 'disconnect') {
        setState('reconnecting');
        log?.warn({ server: s.server }, 'nats bridge disconnected; reconnecting');
      } else if (s.type === 'reconnect') {
        setState('connected');
        m?.reconnects.inc();
        // Diffs other brokers published during the outage never reached us: tell local
        // subscribers (gap notice) so they read Consensus now rather than at their next poll.
        for (const shardId of local) controls?.notifyGap(shardId);
        log?.info(
          { server: s.server, shards: local.size },
          'nats bridge reconnected; subscriptions re-sent, gap notices sent',
        );
      } else if (s.type === 'error') {
        log?.warn({ err: s.error }, 'nats server error');
      } else if (s.type === 'slowConsumer') {
        m?.dropped.inc({ reason: 'slow_consumer' });
      }
    }
  };

  const close = (): Promise<void> => {
    closing ??= (async () => {
      setState('closed');
      closed.abort(new BrokerError('unavailable', 'the NATS bridge was closed'));
      const c = nc;
      nc = undefined;
      subs.clear();
      conn?.close();
      if (c !== undefined) {
        // Flush what is buffered, but never wait on a server that is gone.
        let timer: Timer | undefined;
        await Promise.race([
          c.drain().catch(() => {}),
          new Promise<void>((resolve) => {
            timer = clock.setTimer(resolve, DRAIN_TIMEOUT_MS);
          }),
        ]);
        timer?.cancel();
        if (!c.isClosed()) await c.close().catch(() => {});
      }
    })();
    return closing;
  };

  return {
    brokerId,
    observer,
    get state() {
      return state;
    },
    subscribedShards: () => [...subs.keys()],
    async start(broker, startOptions = {}) {
      if (started) throw new BrokerError('invalid_argument', 'NatsBridge.start called twice');
      started = true;
      const signal =
        startOptions.signal === undefined
          ? closed.signal
          : AbortSignal.any([startOptions.signal, closed.signal]);
      signal.throwIfAborted();
      m = bridgeMetrics(options.registry ?? broker.registry);
      conn = broker.connectInProcess({
        callerId: 'nats-bridge',
        // Not a client: a drain ends as soon as the last client leaves, then ends this one.
        internal: true,
        // The bridge's connection never subscribes, so nothing is delivered to it.
        onMessage: () => {},
        onClose: (reason) => {
          log?.info({ reason }, 'broker ended the bridge connection');
          void close();
        },
      });
      setState('connecting');
      // First connection: our own retry loop (every `reconnectTimeWaitMs`), so that `close()`
      // or `signal` can end it; once connected, nats.js reconnects by itself, forever.
      let c: NatsConnection | undefined;
      let failures = 0;
      try {
        while (c === undefined) {
          const attempt = connect({
            servers,
            name: `persist-pubsub-broker-${brokerId}`,
            noEcho: true,
            maxReconnectAttempts: -1,
            reconnectTimeWait,
            timeout,
            // As the client's NATS transport: a silently dead server is noticed within a minute.
            pingInterval: 30_000,
            maxPingOut: 2,
          });
          try {
            c = await raceSignal(attempt, signal);
          } catch (err) {
            if (signal.aborted) {
              attempt.then((late) => late.close()).catch(() => {});
              throw signal.reason;
            }
            if (failures++ === 0) log?.warn({ err }, 'nats bridge cannot connect yet; retrying');
            await sleep(reconnectTimeWait, { signal, clock, keepAlive: false });
          }
        }
      } catch (err) {
        await close();
        throw err;
      }
      if (state === 'closed') {
        await c.close();
        throw new BrokerError('unavailable', 'the NATS bridge was closed while connecting');
      }
      nc = c;
      setState('connected');
      void watchStatus(c).catch((err: unknown) => log?.debug({ err }, 'status watch ended'));
      void c.closed().then((err) => {
        if (err) log?.warn({ err }, 'nats bridge connection closed');
        if (state !== 'closed') setState('closed');
      });
      for (const shardId of local) natsSubscribe(shardId);
      log?.info({ servers, prefix }, 'nats bridge connected');
    },
    close,
  };
}
