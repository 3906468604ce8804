/**
 * Client metrics: a counterpart of every reference pubsub client metric (Materialize
 * `persist-client/src/metrics.rs`: `PubSubGrpcClientConnectionMetrics`,
 * `PubSubClientReceiverMetrics`, `PubSubClientSenderMetrics`), renamed to the `persist_pubsub_`
 * prefix and Prometheus conventions, with a `transport` label where the reference says "grpc"
 * (so the in-process and NATS transports report through the same series). Plus what the
 * reference lacks: the end-to-end latency histogram (commit time → applied here), dropped
 * pushes by reason, catch-up fetches and flag reload errors.
 *
 * Metrics live on the injected registry, created once per registry (several clients in one
 * process share them), never on prom-client's global registry. Those updated per message or
 * per diff are tallies (`src/util/tally.ts`): the caller keeps a cell per label set and the hot
 * path is a number addition, folded into prom-client at scrape.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { TallyCounter, TallyHistogram } from '../util/index.js';

/** 50 µs to 10 s: loopback pubsub is sub-millisecond, a polling reader is seconds. */
export const E2E_LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
  5, 10,
];

export type PubSubCall = 'push' | 'subscribe' | 'unsubscribe';

export interface ClientMetrics {
  /** 1 while connected (reference `mz_persist_pubsub_client_grpc_connected`). */
  connected: Gauge<'transport'>;
  /** Reference `..._grpc_connection_established_count`. */
  connectionsEstablished: Counter<'transport'>;
  /** Connect attempts including retries (reference `..._grpc_connect_call_attempt_count`). */
  connectAttempts: Counter<'transport'>;
  /** Diffs this client dropped because its consumer lagged (reference `..._broadcast_recv_lagged_count`). */
  receiveLagged: Counter<'transport'>;
  /** Transport errors (reference `..._grpc_error_count`). */
  errors: Counter<'transport'>;
  /** Reference `mz_persist_pubsub_client_call_succeeded{call}`. */
  callSucceeded: TallyCounter<'transport' | 'call'>;
  /** Reference `mz_persist_pubsub_client_call_failed{call}`. */
  callFailed: Counter<'transport' | 'call'>;
  /** Reference `mz_persist_pubsub_client_call_bytes_sent{call}`. */
  callBytesSent: TallyCounter<'transport' | 'call'>;
  /** Reference `mz_persist_pubsub_client_call_received{call}`: push, gap, unknown. */
  received: TallyCounter<'transport' | 'call'>;
  /** Broker stamp → applied (reference `..._approx_diff_apply_latency_seconds`). */
  approxDiffApplyLatency: TallyHistogram;
  /** Reference `..._receiver_state_push_diff_fast_path`: applied directly. */
  applyFastPath: TallyCounter;
  /** Reference `..._receiver_state_push_diff_slow_path_succeeded`. */
  applySlowPathSucceeded: TallyCounter;
  /** Reference `..._receiver_state_push_diff_slow_path_failed`. */
  applySlowPathFailed: TallyCounter;
  /** Origin commit time → applied in this process. */
  e2eLatency: TallyHistogram<'path'>;
  /** Pushes not sent, by reason: disconnected, disabled, push_disabled, queue_full, closed, refused. */
  pushesDropped: Counter<'reason'>;
  /** Consensus catch-up fetches asked for by pubsub events: gap, resync. */
  catchUpFetches: Counter<'reason'>;
  /** Flag sources (environment, file) whose values were rejected. */
  flagErrors: Counter<'source'>;
  /**
   * Shards the broker refused (extension refusal notices), by reason: `invalid_shard_id`,
   * `subscription_limit`. Each such shard is served by polling only.
   */
  shardsRefused: Counter<'transport' | 'reason'>;
  /**
   * GOAWAY handovers, by outcome: `overlapped` (the new connection was up before the old one
   * ended: make-before-break, no resync) or `broken` (the old one ended first: a resync).
   */
  goawayHandovers: Counter<'transport' | 'outcome'>;
  /** Diffs received on both connections of a handover: the second copy is not delivered. */
  goawayDuplicates: TallyCounter<'transport'>;
  /**
   * `resume_unavailable` gap notices from the new connection while the old one still carried
   * the shard (a restarted broker holds no ring yet): not acted on, no catch-up fetch.
   */
  goawayResumeGapsIgnored: Counter<'transport'>;
  /** Several brokers: 1 while the stream to this broker (`grpc://address:port`) is up. */
  brokerConnected: Gauge<'broker'>;
  /** Several replicated brokers: copies of a diff already passed on, dropped before shard state. */
  duplicateDiffs: TallyCounter;
  /**
   * Several brokers: one broker's resync or resume gap for a shard not turned into a Consensus
   * read, because another broker's stream carried the shard all along (or a read was already
   * asked for), by the notice's kind (`resync`, `resume_unavailable`).
   */
  catchUpsCovered: Counter<'reason'>;
}

const cache = new WeakMap<Registry, ClientMetrics>();

/** The client metrics on `registry`, created on first use. */
export function clientMetrics(registry: Registry): ClientMetrics {
  const hit = cache.get(registry);
  if (hit !== undefined) return hit;
  const registers = [registry];
  const m: ClientMetrics = {
    connected: new Gauge({
      name: 'persist_pubsub_client_connected',
      help: 'whether the pubsub client is currently connected to the broker (1) or not (0)',
      labelNames: ['transport'],
      registers,
    }),
    connectionsEstablished: new Counter({
      name: 'persist_pubsub_client_connections_established_total',
      help: 'pubsub connections established to the broker',
      labelNames: ['transport'],
      registers,
    }),
    connectAttempts: new Counter({
      name: 'persist_pubsub_client_connect_attempts_total',
      help: 'connection attempts to the broker, including retries',
      labelNames: ['transport'],
      registers,
    }),
    receiveLagged: new Counter({
      name: 'persist_pubsub_client_receive_lagged_total',
      help: 'received diffs dropped because the consumer lagged behind (a gap is reported instead)',
      labelNames: ['transport'],
      registers,
    }),
    errors: new Counter({
      name: 'persist_pubsub_client_errors_total',
      help: 'transport errors seen by the pubsub client',
      labelNames: ['transport'],
      registers,
    }),
    callSucceeded: new TallyCounter({
      name: 'persist_pubsub_client_call_succeeded_total',
      help: 'pubsub client calls sent',
      labelNames: ['transport', 'call'],
      registers,
    }),
    callFailed: new Counter({
      name: 'persist_pubsub_client_call_failed_total',
      help: 'pubsub client calls that could not be sent',
      labelNames: ['transport', 'call'],
      registers,
    }),
    callBytesSent: new TallyCounter({
      name: 'persist_pubsub_client_call_sent_bytes_total',
      help: 'bytes sent by pubsub client calls',
      labelNames: ['transport', 'call'],
      registers,
    }),
    received: new TallyCounter({
      name: 'persist_pubsub_client_call_received_total',
      help: 'messages received by the pubsub client, by kind (push, gap, unknown)',
      labelNames: ['transport', 'call'],
      registers,
    }),
    approxDiffApplyLatency: new TallyHistogram({
      name: 'persist_pubsub_client_approx_diff_apply_latency_seconds',
      help: 'latency from the broker forwarding a diff to this process applying it',
      buckets: E2E_LATENCY_BUCKETS_SECONDS,
      registers,
    }),
    applyFastPath: new TallyCounter({
      name: 'persist_pubsub_client_receiver_state_push_diff_fast_path_total',
      help: 'received diffs applied directly to the cached shard state',
      registers,
    }),
    applySlowPathSucceeded: new TallyCounter({
      name: 'persist_pubsub_client_receiver_state_push_diff_slow_path_succeeded_total',
      help: 'received diffs that needed the slow path (shard not cached, or held for a gap) and succeeded',
      registers,
    }),
    applySlowPathFailed: new TallyCounter({
      name: 'persist_pubsub_client_receiver_state_push_diff_slow_path_failed_total',
      help: 'received diffs that were not applied (stale, out of order, undecodable)',
      registers,
    }),
    e2eLatency: new TallyHistogram({
      name: 'persist_pubsub_e2e_latency_seconds',
      help: 'latency from a version being committed (origin time) to it being applied in this process, by path (pubsub, poll)',
      labelNames: ['path'],
      buckets: E2E_LATENCY_BUCKETS_SECONDS,
      registers,
    }),
    pushesDropped: new Counter({
      name: 'persist_pubsub_client_pushes_dropped_total',
      help: 'pushes not sent, by reason',
      labelNames: ['reason'],
      registers,
    }),
    catchUpFetches: new Counter({
      name: 'persist_pubsub_client_catch_up_fetches_total',
      help: 'Consensus fetches triggered by pubsub events (gap notice, resync after reconnect)',
      labelNames: ['reason'],
      registers,
    }),
    flagErrors: new Counter({
      name: 'persist_pubsub_client_flag_errors_total',
      help: 'runtime flag updates rejected as invalid, by source',
      labelNames: ['source'],
      registers,
    }),
    shardsRefused: new Counter({
      name: 'persist_pubsub_client_shards_refused_total',
      help: 'shards the broker refused to serve (their readers poll), by reason',
      labelNames: ['transport', 'reason'],
      registers,
    }),
    goawayHandovers: new Counter({
      name: 'persist_pubsub_client_goaway_handovers_total',
      help: 'moves to a new connection after a GOAWAY, by outcome (overlapped: make-before-break; broken: the old connection ended first)',
      labelNames: ['transport', 'outcome'],
      registers,
    }),
    goawayDuplicates: new TallyCounter({
      name: 'persist_pubsub_client_goaway_duplicates_total',
      help: 'diffs received on both the old and the new connection of a GOAWAY handover (the second copy is dropped)',
      labelNames: ['transport'],
      registers,
    }),
    goawayResumeGapsIgnored: new Counter({
      name: 'persist_pubsub_client_goaway_resume_gaps_ignored_total',
      help: 'resume_unavailable gap notices from the new connection of a handover while the old one still carried the shard (no catch-up fetch)',
      labelNames: ['transport'],
      registers,
    }),
    brokerConnected: new Gauge({
      name: 'persist_pubsub_client_broker_connected',
      help: 'with several brokers: whether the stream to each broker is up (1) or not (0)',
      labelNames: ['broker'],
      registers,
    }),
    duplicateDiffs: new TallyCounter({
      name: 'persist_pubsub_client_duplicate_diffs_total',
      help: 'received diffs dropped as copies of one already received from another broker',
      registers,
    }),
    catchUpsCovered: new Counter({
      name: 'persist_pubsub_client_catch_ups_covered_total',
      help: 'resyncs and resume gaps of one broker not read from Consensus because another broker carried the shard',
      labelNames: ['reason'],
      registers,
    }),
  };
  cache.set(registry, m);
  return m;
}
