/**
 * `createPersistClient`: what writers and readers import. It ties the three parts together:
 * Consensus (the truth), the shard-state cache (one shared state per shard in this process) and
 * a pubsub client (the side channel), under runtime flags.
 *
 * Wiring (docs/architecture.md "Client"):
 * - the cache's `onSubscribe`/`onUnsubscribe` hooks hold one pubsub token per open shard, whose
 *   resume seqno is the shard's latest applied seqno;
 * - the cache's `publish` hook pushes every committed diff with its commit time (unless
 *   `persist_pubsub_push_diff_enabled` is off);
 * - received diffs go to `receiveDiff`; a gap notice, and every (re)connect for each subscribed
 *   shard, trigger one `fetchNow`, so no reader waits for its poll timer after an outage;
 * - `onApplied` feeds the end-to-end latency histogram (commit time → applied here).
 * Pubsub is an optimisation only: with the client flag off, or no pubsub at all, readers stay
 * correct through the cache's polling fallback.
 */
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { Broker, ListenAddress } from '../broker/index.js';
import { type Consensus, openConsensus } from '../consensus/index.js';
import {
  createShardStateCache,
  type ShardHandle,
  type ShardStateCache,
  type ShardStateConfig,
  type StateModel,
} from '../shard-state/index.js';
import { type Clock, systemClock } from '../util/index.js';
import { type BrokerSetMode, createBrokerSetPubSubClient } from './broker-set.js';
import { createBrokerTransport } from './broker-transport.js';
import { createPubSubClient } from './create-pubsub-client.js';
import { ClientError } from './errors.js';
import { createFlags, type FlagName, type Flags, type PersistFlags } from './flags.js';
import { type FlagsFileWatcher, watchFlagsFile } from './flags-file.js';
import type { GrpcTransportOptions } from './grpc-transport.js';
import { createGrpcTransport } from './grpc-transport.js';
import { clientMetrics } from './metrics.js';
import { createNatsTransport } from './nats-transport.js';
import { createNoopPubSubClient } from './noop-pubsub-client.js';
import type { PubSubClient, PubSubEvent, SubscriptionToken } from './pubsub-client.js';

/** gRPC to a broker, with TLS/token/keepalive options. */
export type PubSubGrpcOptions = Omit<GrpcTransportOptions, 'callerId' | 'clock'>;

/**
 * Several brokers (`createBrokerSetPubSubClient`, docs/architecture.md "Several brokers"): a
 * list of `grpc://`/`grpcs://` URLs, each host name standing for every address it resolves to
 * (a headless Service), with the gRPC options every broker's stream shares.
 */
export interface PubSubBrokersOptions extends Omit<PubSubGrpcOptions, 'url'> {
  brokers: string | readonly string[];
  /** Every shard on every broker, or each shard on one. @default 'replicated' */
  mode?: BrokerSetMode | undefined;
  /** A host name's addresses. @default `dns.lookup(host, { all: true })` */
  resolve?: ((host: string) => Promise<string[]>) | undefined;
  /** Sharded: a shard moving back to a returning broker stays on its previous one this long, in ms. @default 5000 */
  handoverGraceMs?: number | undefined;
}

/**
 * Where pubsub goes: a `grpc://` or `grpcs://` URL or a broker's Unix socket (`unix:/path`; one
 * stream), a list of them or
 * `{ brokers, mode }` (one stream per broker address, replicated or sharded), a
 * `nats://host:port` URL (clients meet on NATS directly: `createNatsTransport`), gRPC options
 * with such a URL, a broker running in this process (the same-process delegate), a ready
 * `PubSubClient`, or `undefined`/`'none'` for no pubsub (polling only).
 */
export type PubSubTarget =
  | string
  | readonly string[]
  | PubSubBrokersOptions
  | PubSubGrpcOptions
  | Broker<ListenAddress>
  | PubSubClient
  | 'none'
  | undefined;

export interface PersistClientOptions {
  /** A Consensus URL (`mem:`, `sqlite:PATH`, `postgres://…`, `redis://…`) or an instance. */
  consensus: string | Consensus;
  /** @default undefined (no pubsub: readers poll) */
  pubsub?: PubSubTarget;
  /** Sent to the broker as `persist-pubsub-caller-id`; ASCII. @default 'unknown' */
  callerId?: string | undefined;
  /** Runtime flags: a live `Flags` (shared, changeable) or initial values. @default all defaults */
  config?: Flags | Partial<Record<FlagName, unknown>> | undefined;
  /**
   * A JSON file of flag values, watched and applied within 100 ms for as long as the client
   * lives (see `watchFlagsFile`); a bad file is logged and counted and changes nothing.
   */
  flagsFile?: string | undefined;
  /** Shard-state settings that are not flags (reorder window, rollups, batch size). */
  shardState?: Partial<ShardStateConfig> | undefined;
  logger?: Logger | undefined;
  /**
   * Wall time and every timer of the client: the pubsub reconnect loop, shard-state polls and
   * retries, the flags-file poll. Tests pass `createFakeClock()`. @default systemClock
   */
  clock?: Clock | undefined;
  /** Metrics go here (client, shard-state and, for a URL, Consensus). @default a new Registry */
  registry?: Registry | undefined;
}

export interface OpenShardOptions {
  signal?: AbortSignal | undefined;
}

export interface PersistClient {
  /** A handle on a shard's shared state (see `ShardHandle`). */
  openShard<S = unknown, D = unknown>(
    shardId: string,
    model?: StateModel<S, D>,
    options?: OpenShardOptions,
  ): Promise<ShardHandle<S>>;
  /** The runtime flags; `flags.set(...)` takes effect at once. */
  readonly flags: Flags;
  readonly pubsub: PubSubClient;
  readonly consensus: Consensus;
  readonly registry: Registry;
  /** Closes every handle, the pubsub connection and (if opened from a URL) the Consensus. */
  close(): Promise<void>;
}

function isFlags(v: unknown): v is Flags {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Flags).get === 'function' &&
    typeof (v as Flags).onChange === 'function'
  );
}

function isBroker(v: object): v is Broker<ListenAddress> {
  return typeof (v as Broker).connectInProcess === 'function';
}

function isStringList(v: unknown): v is readonly string[] {
  return Array.isArray(v) && v.every((u) => typeof u === 'string');
}

function isBrokerList(v: unknown): v is readonly string[] | PubSubBrokersOptions {
  return (
    isStringList(v) ||
    (typeof v === 'object' &&
      v !== null &&
      'brokers' in v &&
      (typeof v.brokers === 'string' || isStringList(v.brokers)))
  );
}

function isPubSubClient(v: object): v is PubSubClient {
  return (
    typeof (v as PubSubClient).push === 'function' &&
    typeof (v as PubSubClient).events === 'function'
  );
}

function pollConfig(f: Readonly<PersistFlags>): Partial<ShardStateConfig> {
  return {
    pollFirstSleepMs: f.persist_next_listen_batch_retryer_fixed_sleep_ms,
    pollInitialBackoffMs: f.persist_next_listen_batch_retryer_initial_backoff_ms,
    pollMaxBackoffMs: f.persist_next_listen_batch_retryer_clamp_ms,
  };
}

export async function createPersistClient(options: PersistClientOptions): Promise<PersistClient> {
  if (typeof options !== 'object' || options === null) {
    throw new ClientError('invalid_argument', 'options must be an object');
  }
  const registry = options.registry ?? new Registry();
  const logger = options.logger;
  const log = logger?.child({ component: 'persist-client' });
  const flags = isFlags(options.config) ? options.config : createFlags(options.config ?? {});
  const callerId = options.callerId ?? 'unknown';
  const clock = options.clock ?? systemClock;
  const m = clientMetrics(registry);
  if (options.flagsFile !== undefined && typeof options.flagsFile !== 'string') {
    throw new ClientError('invalid_argument', 'flagsFile must be a path', { field: 'flagsFile' });
  }
  // Before anything connects, so the file's values apply from the start.
  const watcher: FlagsFileWatcher | undefined =
    options.flagsFile === undefined
      ? undefined
      : watchFlagsFile(flags, options.flagsFile, {
          logger,
          clock,
          onError: () => m.flagErrors.inc({ source: 'file' }),
        });

  // Pubsub first: it validates its options synchronously and never blocks.
  const pubsubOpts = { flags, logger, registry, clock };
  const target = options.pubsub;
  let pubsub: PubSubClient;
  try {
    if (target === undefined || target === 'none') {
      pubsub = createNoopPubSubClient({ registry });
    } else if (typeof target === 'string' && /^(nats|tls):\/\//i.test(target)) {
      pubsub = createPubSubClient(
        createNatsTransport({ url: target, callerId, clock }),
        pubsubOpts,
      );
    } else if (typeof target === 'string') {
      pubsub = createPubSubClient(
        createGrpcTransport({ url: target, callerId, clock, flags }),
        pubsubOpts,
      );
    } else if (isBrokerList(target)) {
      const { brokers, mode, resolve, handoverGraceMs, ...grpc }: PubSubBrokersOptions =
        isStringList(target) ? { brokers: target } : target;
      pubsub = createBrokerSetPubSubClient({
        ...pubsubOpts,
        brokers: typeof brokers === 'string' ? [brokers] : brokers,
        mode,
        resolve,
        handoverGraceMs,
        transport: (url, serverName) =>
          createGrpcTransport({
            ...grpc,
            url,
            callerId,
            clock,
            // An address resolved from a name is verified against that name.
            ...(url.startsWith('grpcs:') && serverName !== undefined
              ? { tls: { ...grpc.tls, serverName: grpc.tls?.serverName ?? serverName } }
              : {}),
          }),
      });
    } else if (typeof target === 'object' && target !== null && isBroker(target)) {
      pubsub = createPubSubClient(
        createBrokerTransport(target, { flags, callerId, grpc: { clock } }),
        {
          ...pubsubOpts,
          reconnectOn: (next, prev) =>
            next.persist_pubsub_same_process_delegate_enabled !==
            prev.persist_pubsub_same_process_delegate_enabled,
        },
      );
    } else if (typeof target === 'object' && target !== null && isPubSubClient(target)) {
      pubsub = target;
    } else if (typeof target === 'object' && target !== null && typeof target.url === 'string') {
      pubsub = createPubSubClient(
        createGrpcTransport({ ...target, callerId, clock, flags }),
        pubsubOpts,
      );
    } else {
      throw new ClientError(
        'invalid_argument',
        'pubsub must be a grpc://, grpcs://, unix: or nats:// URL, a list of broker URLs, gRPC options with a url or brokers, a Broker, a PubSubClient or none',
        { field: 'pubsub' },
      );
    }
  } catch (err) {
    watcher?.close();
    throw err;
  }

  let consensus: Consensus;
  let ownsConsensus = false;
  try {
    if (typeof options.consensus === 'string') {
      consensus = await openConsensus(options.consensus, { logger, registry });
      ownsConsensus = true;
    } else if (typeof options.consensus === 'object' && options.consensus !== null) {
      consensus = options.consensus;
    } else {
      throw new ClientError('invalid_argument', 'consensus must be a URL or a Consensus', {
        field: 'consensus',
      });
    }
  } catch (err) {
    watcher?.close();
    if (pubsub !== target) await pubsub.close();
    throw err;
  }

  const pollingOnly = target === undefined || target === 'none';
  // Cells of the metrics updated per diff (no label work per diff).
  const e2ePubsub = m.e2eLatency.cell({ path: 'pubsub' });
  const e2ePoll = m.e2eLatency.cell({ path: 'poll' });
  const fastPath = m.applyFastPath.cell();
  const slowPathSucceeded = m.applySlowPathSucceeded.cell();
  const slowPathFailed = m.applySlowPathFailed.cell();
  const approxApplyLatency = m.approxDiffApplyLatency.cell();
  const tokens = new Map<string, SubscriptionToken>();
  let cache: ShardStateCache;
  try {
    cache = createShardStateCache({
      consensus,
      registry,
      logger,
      clock,
      config: { ...options.shardState, ...pollConfig(flags.get()) },
      hooks: {
        onSubscribe(shardId) {
          tokens.get(shardId)?.release();
          tokens.set(
            shardId,
            pubsub.subscribe(shardId, { resumeAfterSeqno: () => cache.appliedSeqno(shardId) }),
          );
        },
        onUnsubscribe(shardId) {
          tokens.get(shardId)?.release();
          tokens.delete(shardId);
        },
        publish(event) {
          // Polling only: there is nowhere to send to, so nothing is dropped (issue 15, 7a).
          if (pollingOnly) return;
          if (!flags.get().persist_pubsub_push_diff_enabled) {
            m.pushesDropped.inc({ reason: 'push_disabled' });
            return;
          }
          pubsub.push(event.shardId, event.seqno, event.diff, event.commitTimeMs);
        },
        onApplied(event) {
          if (event.source === 'local') return;
          const seconds = Math.max(0, event.appliedAtMs - event.originTimestampMs) / 1000;
          (event.source === 'pubsub' ? e2ePubsub : e2ePoll).observe(seconds);
        },
      },
    });
  } catch (err) {
    watcher?.close();
    if (pubsub !== target) await pubsub.close();
    if (ownsConsensus) await consensus.close();
    throw err;
  }

  const offFlags = flags.onChange((next, prev) => {
    const a = pollConfig(next);
    const b = pollConfig(prev);
    if (JSON.stringify(a) === JSON.stringify(b)) return;
    try {
      cache.setConfig(a);
    } catch (err) {
      m.flagErrors.inc({ source: 'shard_state' });
      log?.error({ err }, 'poll flags rejected by shard state; previous schedule stays');
    }
  });

  /** Reused for every diff: `receiveDiff` reads it synchronously and keeps nothing. */
  const receiveOptions = { originTimestampMs: undefined as number | undefined, receivedAtMs: 0 };
  const handle = (ev: PubSubEvent, nowMs: number): void => {
    if (ev.kind === 'diff') {
      receiveOptions.originTimestampMs = ev.originTimestampMs;
      receiveOptions.receivedAtMs = nowMs;
      const outcome = cache.receiveDiff(ev.shardId, ev.seqno, ev.diff, receiveOptions);
      if (outcome === 'applied') {
        fastPath.value++;
        if (ev.brokerTimestampMs !== undefined) {
          approxApplyLatency.observe(Math.max(0, nowMs - ev.brokerTimestampMs) / 1000);
        }
      } else if (outcome === 'held') slowPathSucceeded.value++;
      else if (outcome === 'stale' || outcome === 'refetch') slowPathFailed.value++;
    } else if (ev.kind === 'gap') {
      m.catchUpFetches.inc({ reason: 'gap' });
      void cache.fetchNow(ev.shardId, 'gap_notice');
    } else if (ev.kind === 'refused') {
      // Counted and logged by the pubsub client; the handles show it, the shard polls.
      cache.setPubSubStatus(ev.shardId, {
        state: 'refused',
        reason: ev.reason,
        call: ev.call,
        error: new ClientError(
          'refused',
          `the broker refused ${ev.call === 'unknown' ? '' : `a ${ev.call} of `}shard ${ev.shardId} (${ev.reason}): ${ev.detail}`,
        ),
      });
    } else {
      const open = new Set(cache.openShards());
      for (const shardId of ev.shardIds) {
        if (!open.has(shardId)) continue;
        m.catchUpFetches.inc({ reason: 'resync' });
        void cache.fetchNow(shardId, 'reconnect');
      }
    }
  };
  // One consumer of the pubsub events for the life of the client. Synchronous where the client
  // offers it (`onEvent`): each diff is applied in the read that brought it, with no event
  // queued and no promise or microtask hop between the read and the apply (waiters still wake
  // once per run of applies, `src/shard-state/waiters.ts`). Otherwise a batch (what arrived in
  // one turn) at a time: one wake-up per batch, not a promise per diff.
  let stopEvents: (() => void) | undefined;
  let stream: AsyncIterator<readonly PubSubEvent[], undefined> | undefined;
  let pump: Promise<void> = Promise.resolve();
  if (pubsub.onEvent !== undefined) {
    stopEvents = pubsub.onEvent((ev) => {
      try {
        handle(ev, clock.nowMs());
      } catch (err) {
        log?.error({ err }, 'handling a pubsub event failed');
      }
    });
  } else {
    const it =
      pubsub.eventBatches?.()[Symbol.asyncIterator]() ??
      singles(pubsub.events()[Symbol.asyncIterator]());
    stream = it;
    pump = (async () => {
      for (;;) {
        const next = await it.next();
        if (next.done) break;
        // One clock read per batch: the batch arrived in one turn.
        const nowMs = clock.nowMs();
        for (const ev of next.value) handle(ev, nowMs);
      }
    })().catch((err: unknown) => log?.error({ err }, 'pubsub event loop failed'));
  }

  let closing: Promise<void> | undefined;
  return {
    openShard(shardId, model, openOptions) {
      if (closing !== undefined) {
        return Promise.reject(new ClientError('closed', 'the persist client is closed'));
      }
      return cache.open(shardId, model, openOptions);
    },
    flags,
    pubsub,
    consensus,
    registry,
    close() {
      closing ??= (async () => {
        watcher?.close();
        offFlags();
        cache.close();
        for (const t of tokens.values()) t.release();
        tokens.clear();
        stopEvents?.();
        await stream?.return?.();
        if (pubsub !== target) await pubsub.close();
        await pump;
        if (ownsConsensus) await consensus.close();
      })();
      return closing;
    },
  };
}

/** Batches of one, for a `PubSubClient` without `eventBatches`. */
function singles(it: AsyncIterator<PubSubEvent>): AsyncIterator<readonly PubSubEvent[], undefined> {
  return {
    async next() {
      const r = await it.next();
      return r.done ? { value: undefined, done: true } : { value: [r.value], done: false };
    },
    async return() {
      await it.return?.();
      return { value: undefined, done: true };
    },
  };
}
