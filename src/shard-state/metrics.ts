/**
 * Shard-state metrics, on an injected registry (never the global one). Counterparts of the
 * reference's per-shard pubsub apply metrics (`pubsub_push_diff_applied`,
 * `..._not_applied_stale`, `..._not_applied_out_of_order`), of its state fetch paths (noop,
 * empty, fast, slow), of its listen wake counters (watch vs sleep) and Consensus reads by reason.
 */
import { Gauge, Histogram, type Registry } from 'prom-client';
import { type CounterCell, TallyCounter } from '../util/index.js';

export type FetchPath = 'noop' | 'empty' | 'fast' | 'slow';

/** One shard's hot counters, taken once when the shard opens (no label work per diff). */
export interface ShardCells {
  applied: CounterCell;
  stale: CounterCell;
  outOfOrder: CounterCell;
}

/**
 * Counters are tallies (`src/util/tally.ts`): a cell per label set, added to with a plain number
 * addition, folded into prom-client when the registry is scraped.
 */
export interface ShardStateMetrics {
  diffApplied: TallyCounter<'shard'>;
  diffStale: TallyCounter<'shard'>;
  diffOutOfOrder: TallyCounter<'shard'>;
  diffInvalid: TallyCounter<'shard' | 'reason'>;
  fetches: TallyCounter<'path'>;
  consensusReads: TallyCounter<'reason'>;
  readErrors: TallyCounter<'code'>;
  listenWoken: TallyCounter<'via'>;
  /** `listenWoken` cells: a diff applied (watch), a poll found it (timer). */
  wokenByWatch: CounterCell;
  wokenByTimer: CounterCell;
  /** `onVersion` callbacks that threw (caught; the apply went on). */
  followerErrors: CounterCell;
  commits: TallyCounter<'outcome'>;
  /** The `commits{outcome="committed"}` cell. */
  committed: CounterCell;
  truncations: TallyCounter<'outcome'>;
  gapToApplied: Histogram<'resolution'>;
  /** The cells of a shard being opened. */
  forShard(shardId: string): ShardCells;
  /** Forgets a released shard's label values. */
  forgetShard(shardId: string): void;
  /** Stops counting this cache's shards in the open-shards gauge (the cache closed). */
  detach(): void;
}

/** The open-shard counters of the caches sharing each registry (a cache adds its own). */
const openShardSources = new WeakMap<Registry, Set<() => number>>();
/** The metrics of each registry, shared by the caches on it. */
const shared = new WeakMap<Registry, Omit<ShardStateMetrics, 'detach'>>();

export function createShardStateMetrics(
  registry: Registry,
  openShards: () => number,
): ShardStateMetrics {
  const registers = [registry];
  let base = shared.get(registry);
  if (base === undefined) {
    base = createMetrics(registry);
    shared.set(registry, base);
  }
  const m: ShardStateMetrics = { ...base, detach() {} };
  // Several caches may share a registry: the gauge sums them all.
  let sources = openShardSources.get(registry);
  if (sources === undefined) {
    const all = new Set<() => number>();
    sources = all;
    openShardSources.set(registry, all);
    new Gauge({
      name: 'persist_pubsub_state_open_shards',
      help: 'Shards held open by the shard-state caches of this registry',
      registers,
      collect() {
        let n = 0;
        for (const f of all) n += f();
        this.set(n);
      },
    });
  }
  sources.add(openShards);
  const mine = sources;
  m.detach = () => mine.delete(openShards);
  return m;
}

function createMetrics(registry: Registry): Omit<ShardStateMetrics, 'detach'> {
  const registers = [registry];
  const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
    new TallyCounter<L>({ name, help, labelNames, registers });
  const listenWoken = counter(
    'persist_pubsub_state_listen_woken_total',
    'Waiting readers (and onVersion callbacks) woken, via the watch (a diff was applied) or via the poll timer',
    ['via'],
  );
  const commits = counter(
    'persist_pubsub_state_commits_total',
    'Writer compare-and-sets by outcome (committed, mismatch, unavailable, error; indeterminate, then what the re-read found) and no-op updates',
    ['outcome'],
  );
  const m: Omit<ShardStateMetrics, 'detach'> = {
    diffApplied: counter(
      'persist_pubsub_state_diff_applied_total',
      'Pushed diffs applied to a shard state (reference: pubsub_push_diff_applied)',
      ['shard'],
    ),
    diffStale: counter(
      'persist_pubsub_state_diff_stale_total',
      'Pushed diffs ignored because the state was already at or past their seqno (reference: pubsub_push_diff_not_applied_stale)',
      ['shard'],
    ),
    diffOutOfOrder: counter(
      'persist_pubsub_state_diff_out_of_order_total',
      'Pushed diffs that arrived ahead of the next seqno and were held (reference: pubsub_push_diff_not_applied_out_of_order)',
      ['shard'],
    ),
    diffInvalid: counter(
      'persist_pubsub_state_diff_invalid_total',
      'Pushed diffs that did not decode or apply cleanly; the state was refetched',
      ['shard', 'reason'],
    ),
    fetches: counter(
      'persist_pubsub_state_fetch_total',
      'State fetches by path: noop (already current), empty (nothing newer), fast (diffs applied), slow (reloaded from a rollup)',
      ['path'],
    ),
    consensusReads: counter(
      'persist_pubsub_state_consensus_reads_total',
      'Consensus reads (scans) made by shard state, by reason',
      ['reason'],
    ),
    readErrors: counter(
      'persist_pubsub_state_read_errors_total',
      'Reads of a shard from Consensus that failed, by code (corrupt_log: a version could not be read or applied; otherwise the Consensus error code)',
      ['code'],
    ),
    listenWoken,
    wokenByWatch: listenWoken.cell({ via: 'watch' }),
    wokenByTimer: listenWoken.cell({ via: 'timer' }),
    followerErrors: counter(
      'persist_pubsub_state_follower_errors_total',
      'onVersion callbacks that threw; the exception was caught and logged, the version stayed applied',
      [],
    ).cell({}),
    commits,
    committed: commits.cell({ outcome: 'committed' }),
    truncations: counter(
      'persist_pubsub_state_truncations_total',
      'Best-effort truncations behind a rollup, by outcome',
      ['outcome'],
    ),
    gapToApplied: new Histogram<'resolution'>({
      name: 'persist_pubsub_state_gap_to_applied_seconds',
      help: 'Time from a diff held for a gap to the gap closing, by how it closed (pubsub: the missing diffs arrived; fetch: read from Consensus)',
      labelNames: ['resolution'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5],
      registers,
    }),
    forShard(shardId) {
      return {
        applied: m.diffApplied.cell({ shard: shardId }),
        stale: m.diffStale.cell({ shard: shardId }),
        outOfOrder: m.diffOutOfOrder.cell({ shard: shardId }),
      };
    },
    forgetShard(shardId) {
      for (const c of [m.diffApplied, m.diffStale, m.diffOutOfOrder]) c.remove({ shard: shardId });
      for (const reason of ['decode', 'apply', 'seqno']) {
        m.diffInvalid.remove({ shard: shardId, reason });
      }
    },
  };
  return m;
}
