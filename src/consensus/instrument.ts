import { performance } from 'node:perf_hooks';
import type { Registry } from 'prom-client';
import {
  type CounterCell,
  type HistogramCell,
  TallyCounter,
  TallyHistogram,
} from '../util/index.js';
import { ConsensusError } from './errors.js';
import type { CallOptions, Consensus, ListKeysOptions, VersionedData } from './types.js';

/** An operation, as the `op` label of the Consensus metrics. */
export type ConsensusOp = 'head' | 'compare_and_set' | 'scan' | 'truncate' | 'list_keys';

export const CONSENSUS_OPS_TOTAL = 'persist_pubsub_consensus_ops_total';
export const CONSENSUS_OP_DURATION_SECONDS = 'persist_pubsub_consensus_op_duration_seconds';
export const CONSENSUS_CAS_MISMATCHES_TOTAL = 'persist_pubsub_consensus_cas_mismatches_total';

/** Latency buckets, in seconds: 50 µs (memory) to 10 s (a stalled database). */
export const CONSENSUS_DURATION_BUCKETS_SECONDS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
  10,
];

export interface InstrumentConsensusOptions {
  /** Where the metrics are registered; never the global registry. */
  registry: Registry;
  /** A monotonic clock in milliseconds, for tests. @default performance.now */
  nowMs?: (() => number) | undefined;
}

interface Metrics {
  ops: TallyCounter<'op' | 'backend' | 'result'>;
  duration: TallyHistogram<'op' | 'backend'>;
  mismatches: TallyCounter<'backend'>;
}

/** One operation's cells, taken once per instance: the hot path only adds to numbers. */
interface OpCells {
  duration: HistogramCell;
  /** By result (`ok`, `committed`, `mismatch`, an error code), made on first use. */
  results: Map<string, CounterCell>;
}

/**
 * Wraps a Consensus so that each call is counted and timed:
 *
 * - `persist_pubsub_consensus_ops_total{op,backend,result}`: `result` is `ok`, `committed` or
 *   `mismatch` (compare-and-set), or the `ConsensusError` code of a failure (`error` for any
 *   other exception);
 * - `persist_pubsub_consensus_op_duration_seconds{op,backend}`: a histogram of every call,
 *   failed ones included;
 * - `persist_pubsub_consensus_cas_mismatches_total{backend}`: lost compare-and-set races.
 *
 * The metrics are created once per registry: several Consensus instances on one registry share
 * them (distinguished by `backend`). `openConsensus` applies this when given a `registry`.
 * Each call costs a few number additions (`src/util` tally cells, folded in at a scrape), not
 * prom-client's label hashing.
 */
export function instrumentConsensus(
  inner: Consensus,
  options: InstrumentConsensusOptions,
): Consensus {
  const metrics = metricsFor(options.registry);
  const nowMs = options.nowMs ?? (() => performance.now());
  const backend = inner.backend;

  const cells = new Map<ConsensusOp, OpCells>();
  const cellsOf = (op: ConsensusOp): OpCells => {
    let c = cells.get(op);
    if (c === undefined) {
      c = { duration: metrics.duration.cell({ op, backend }), results: new Map() };
      cells.set(op, c);
    }
    return c;
  };
  const mismatches = metrics.mismatches.cell({ backend });

  async function timed<T>(op: ConsensusOp, call: () => Promise<T>, result: (v: T) => string) {
    const start = nowMs();
    let outcome = 'error';
    try {
      const value = await call();
      outcome = result(value);
      return value;
    } catch (err) {
      if (err instanceof ConsensusError) outcome = err.code;
      throw err;
    } finally {
      const c = cellsOf(op);
      c.duration.observe(Math.max(0, nowMs() - start) / 1000);
      let r = c.results.get(outcome);
      if (r === undefined) {
        r = metrics.ops.cell({ op, backend, result: outcome });
        c.results.set(outcome, r);
      }
      r.value++;
      if (outcome === 'mismatch') mismatches.value++;
    }
  }
  const ok = () => 'ok';

  return {
    backend,
    head: (key: string, opts?: CallOptions) => timed('head', () => inner.head(key, opts), ok),
    compareAndSet: (
      key: string,
      expected: bigint | null,
      next: VersionedData,
      opts?: CallOptions,
    ) =>
      timed(
        'compare_and_set',
        () => inner.compareAndSet(key, expected, next, opts),
        (r) => r,
      ),
    scan: (key: string, from: bigint, limit: number, opts?: CallOptions) =>
      timed('scan', () => inner.scan(key, from, limit, opts), ok),
    truncate: (key: string, seqno: bigint, opts?: CallOptions) =>
      timed('truncate', () => inner.truncate(key, seqno, opts), ok),
    listKeys: (opts?: ListKeysOptions) => timed('list_keys', () => inner.listKeys(opts), ok),
    close: () => inner.close(),
  };
}

const byRegistry = new WeakMap<Registry, Metrics>();

/** The registry's Consensus metrics, created on first use and reused afterwards. */
function metricsFor(registry: Registry): Metrics {
  const known = byRegistry.get(registry);
  if (known !== undefined) return known;
  for (const name of [
    CONSENSUS_OPS_TOTAL,
    CONSENSUS_OP_DURATION_SECONDS,
    CONSENSUS_CAS_MISMATCHES_TOTAL,
  ]) {
    if (registry.getSingleMetric(name) !== undefined) {
      throw new ConsensusError(
        'invalid_argument',
        `registry: metric ${name} is already registered with another type`,
      );
    }
  }
  const metrics: Metrics = {
    ops: new TallyCounter({
      name: CONSENSUS_OPS_TOTAL,
      help: 'Consensus operations by operation, backend and result.',
      labelNames: ['op', 'backend', 'result'] as const,
      registers: [registry],
    }),
    duration: new TallyHistogram({
      name: CONSENSUS_OP_DURATION_SECONDS,
      help: 'Duration of Consensus operations, failed ones included, in seconds.',
      labelNames: ['op', 'backend'] as const,
      buckets: CONSENSUS_DURATION_BUCKETS_SECONDS,
      registers: [registry],
    }),
    mismatches: new TallyCounter({
      name: CONSENSUS_CAS_MISMATCHES_TOTAL,
      help: 'Compare-and-set calls that lost the race: the head was not the expected seqno.',
      labelNames: ['backend'] as const,
      registers: [registry],
    }),
  };
  byRegistry.set(registry, metrics);
  return metrics;
}
