/**
 * The broker's Prometheus metrics, on the injected registry (never the global one).
 *
 * Counterparts of the reference server's metrics (Materialize `PubSubServerMetrics`):
 *   mz_persist_pubsub_server_active_connections           → persist_pubsub_server_active_connections
 *   ..._broadcasted_diff_count / _bytes                   → ..._broadcasted_diffs_total / _broadcasted_diff_bytes_total
 *   ..._broadcasted_diff_dropped_channel_full             → ..._dropped_diffs_total{reason="queue_full"}
 *   ..._call_count{call}                                   → ..._calls_total{call}
 *   ..._operation_seconds{op} (incl. connection_cleanup)   → ..._operation_seconds_total{op}
 * and ours: fan-out latency histogram, per-caller calls, rejections by limit, parse errors, gap
 * notices, resume replays, connection closes by status, queue and ring gauges.
 *
 * Hot counters are plain numbers in `BrokerStats`, copied into prom-client only when scraped
 * (`collect()`), so the fan-out path never pays for label hashing.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export const METRIC_PREFIX = 'persist_pubsub_server_';

/** Why a diff was not delivered to a subscriber (or not forwarded at all). */
export type DropReason = 'queue_full' | 'not_forwarding' | 'closed';
/** Which limit or check refused a call or a message. */
export type RejectReason =
  | 'message_size'
  | 'connections'
  | 'subscriptions'
  | 'shard_id_length'
  | 'shard_id_charset'
  | 'unauthenticated'
  | 'malformed'
  | 'compressed'
  | 'content_type'
  | 'unimplemented'
  | 'draining'
  | 'tcp_connections'
  | 'handshake_timeout';
export type CallKind = 'push' | 'subscribe' | 'unsubscribe';
/**
 * What a scoped token's refusal is about (`refused_total{call}`): a push, a subscribe, or the
 * whole stream (its token was revoked by a reload).
 */
export type RefusedCallKind = 'push' | 'subscribe' | 'stream';
/**
 * Why (`refused_total{reason}`): `permission_denied`, the call is outside the token's scope;
 * `revoked`, a reload took the token away (its streams are closed) or narrowed its scope (the
 * subscriptions it no longer covers are dropped).
 */
export type RefusedReason = 'permission_denied' | 'revoked';
export type OpKind = CallKind | 'connection_cleanup';
/** One caller label's calls, by kind. */
export type CallCounts = Record<CallKind, number>;

export interface BrokerStats {
  broadcastedDiffs: number;
  broadcastedBytes: number;
  drops: Record<DropReason, number>;
  calls: Record<CallKind, number>;
  opSeconds: Record<OpKind, number>;
  /**
   * Calls by caller label. Each connection holds its label's counts (`callerCounts`), so a call
   * is one property increment: no Map lookup or key string per push.
   */
  callerCalls: Map<string, CallCounts>;
  /** `${callerLabel}\u0000${call}\u0000${reason}` → count (scoped tokens' refusals). */
  refusals: Map<string, number>;
  resumeReplayed: number;
}

export interface BrokerMetrics {
  stats: BrokerStats;
  fanoutLatency: Histogram;
  rejected(reason: RejectReason): void;
  parseError(code: string): void;
  gapNotice(reason: string): void;
  connectionClosed(status: string): void;
  /** A scoped token's refusal (a reference client may repeat one at its push rate: no labels hashed). */
  refused(callerLabel: string, call: RefusedCallKind, reason: RefusedReason): void;
  /** The label for a caller id, `other` once `maxCallerIdLabels` distinct ones are in use. */
  callerLabel(callerId: string): string;
  /** The call counts of a caller label (from `callerLabel`), created at its first use. */
  callerCounts(label: string): CallCounts;
}

export interface BrokerGaugeSources {
  activeConnections(): number;
  tcpConnections(): number;
  shards(): number;
  subscriptions(): number;
  queuedMessages(): number;
  queuedBytes(): number;
  resumeRingBytes(): number;
  /** Scoped tokens in force (0 without `--auth-tokens-file`). */
  authTokens(): number;
}

/**
 * `operation_seconds_total{op="push"}` times one push in this many and counts it this many
 * times (an unbiased sum): two clock reads per push were a tenth of the core's own CPU.
 */
export const PUSH_TIME_SAMPLE_EVERY = 8;

const CALL_KINDS: readonly CallKind[] = ['push', 'subscribe', 'unsubscribe'];

export function createBrokerMetrics(
  registry: Registry,
  gauges: BrokerGaugeSources,
  maxCallerIdLabels: number,
): BrokerMetrics {
  const registers = [registry];
  const stats: BrokerStats = {
    broadcastedDiffs: 0,
    broadcastedBytes: 0,
    drops: { queue_full: 0, not_forwarding: 0, closed: 0 },
    calls: { push: 0, subscribe: 0, unsubscribe: 0 },
    opSeconds: { push: 0, subscribe: 0, unsubscribe: 0, connection_cleanup: 0 },
    callerCalls: new Map(),
    refusals: new Map(),
    resumeReplayed: 0,
  };

  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name: METRIC_PREFIX + name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  gauge('active_connections', 'Open pubsub connections (streams).', gauges.activeConnections);
  gauge('tcp_connections', 'Open sockets (TCP or Unix) to the gRPC port.', gauges.tcpConnections);
  gauge('shards', 'Shards with at least one subscriber.', gauges.shards);
  gauge('subscriptions', 'Subscriptions across all connections.', gauges.subscriptions);
  gauge('queued_messages', 'Messages waiting in outbound queues.', gauges.queuedMessages);
  gauge('queued_bytes', 'Bytes waiting in outbound queues.', gauges.queuedBytes);
  gauge('resume_ring_bytes', 'Bytes held by per-shard resume rings.', gauges.resumeRingBytes);
  gauge('auth_tokens', 'Scoped bearer tokens in force (--auth-tokens-file).', gauges.authTokens);

  const mirror = (name: string, help: string, read: () => number) =>
    new Counter({
      name: METRIC_PREFIX + name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  mirror(
    'broadcasted_diffs_total',
    'Diffs delivered to subscriber queues.',
    () => stats.broadcastedDiffs,
  );
  mirror(
    'broadcasted_diff_bytes_total',
    'Bytes of diffs delivered to subscriber queues.',
    () => stats.broadcastedBytes,
  );
  mirror(
    'resume_replayed_diffs_total',
    'Diffs replayed from resume rings.',
    () => stats.resumeReplayed,
  );

  const labelled = <K extends string>(
    name: string,
    help: string,
    label: string,
    read: () => Record<K, number>,
  ) =>
    new Counter({
      name: METRIC_PREFIX + name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (const [k, v] of Object.entries(read()) as [string, number][]) {
          this.labels(k).inc(v);
        }
      },
    });
  labelled('dropped_diffs_total', 'Diffs not delivered, by reason.', 'reason', () => stats.drops);
  labelled('calls_total', 'Messages received, by call.', 'call', () => stats.calls);
  labelled(
    'operation_seconds_total',
    `Time spent handling each operation, in seconds (pushes: one in ${PUSH_TIME_SAMPLE_EVERY} timed, counted ${PUSH_TIME_SAMPLE_EVERY} times).`,
    'op',
    () => stats.opSeconds,
  );

  new Counter({
    name: `${METRIC_PREFIX}caller_calls_total`,
    help: 'Messages received, by caller id (persist-pubsub-caller-id) and call.',
    labelNames: ['caller_id', 'call'],
    registers,
    collect() {
      this.reset();
      for (const [label, counts] of stats.callerCalls) {
        for (const call of CALL_KINDS) {
          if (counts[call] > 0) this.labels(label, call).inc(counts[call]);
        }
      }
    },
  });

  new Counter({
    name: `${METRIC_PREFIX}refused_total`,
    help: "Pushes, subscribes and streams refused by a scoped token's scope, by caller id (the token's name), call (push, subscribe, stream) and reason (permission_denied, revoked).",
    labelNames: ['caller_id', 'call', 'reason'],
    registers,
    collect() {
      this.reset();
      for (const [key, v] of stats.refusals) {
        const [caller, call, reason] = key.split('\u0000') as [string, string, string];
        this.labels(caller, call, reason).inc(v);
      }
    },
  });

  const rejections = new Counter({
    name: `${METRIC_PREFIX}rejections_total`,
    help: 'Calls or messages refused by a limit or check, by reason.',
    labelNames: ['limit'],
    registers,
  });
  const parseErrors = new Counter({
    name: `${METRIC_PREFIX}parse_errors_total`,
    help: 'Inbound messages that could not be parsed, by error code.',
    labelNames: ['code'],
    registers,
  });
  const gapNotices = new Counter({
    name: `${METRIC_PREFIX}gap_notices_total`,
    help: 'Gap notices sent to subscribers, by reason.',
    labelNames: ['reason'],
    registers,
  });
  const closed = new Counter({
    name: `${METRIC_PREFIX}connections_closed_total`,
    help: 'Pubsub connections ended, by final gRPC status (RESET: the TCP connection was reset or lost before any status).',
    labelNames: ['status'],
    registers,
  });
  const fanoutLatency = new Histogram({
    name: `${METRIC_PREFIX}fanout_latency_seconds`,
    help: 'From receiving a push to writing it to a subscriber (oldest queued frame per flush; one flush in 8 is sampled), in seconds.',
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1],
    registers,
  });

  const callerLabels = new Set<string>();
  return {
    stats,
    fanoutLatency,
    rejected: (reason) => rejections.labels(reason).inc(),
    parseError: (code) => parseErrors.labels(code).inc(),
    gapNotice: (reason) => gapNotices.labels(reason).inc(),
    connectionClosed: (status) => closed.labels(status).inc(),
    refused(callerLabel, call, reason) {
      const key = `${callerLabel}\u0000${call}\u0000${reason}`;
      stats.refusals.set(key, (stats.refusals.get(key) ?? 0) + 1);
    },
    callerLabel(callerId) {
      if (callerLabels.has(callerId)) return callerId;
      if (callerLabels.size < maxCallerIdLabels) {
        callerLabels.add(callerId);
        return callerId;
      }
      return 'other';
    },
    callerCounts(label) {
      let counts = stats.callerCalls.get(label);
      if (counts === undefined) {
        counts = { push: 0, subscribe: 0, unsubscribe: 0 };
        stats.callerCalls.set(label, counts);
      }
      return counts;
    },
  };
}
