/**
 * A demo worker process (`node dist/src/cli/demo-worker.js CONFIG_JSON`, started by
 * `persist-pubsub demo` with an IPC channel): a writer committing to every demo shard at a
 * fixed rate, or a reader following every demo shard like a materialized view, both through
 * the SDK (`createPersistClient`) with the broker as pubsub and the flags file watched.
 * It reports counters, commits and applications to the parent and exits when the parent goes
 * away. With `PERSIST_PUBSUB_DEMO_DEBUG=1` it prints its own metrics (read reasons, fetch paths,
 * diffs applied/stale/out of order, lagged receives, e2e by path) to stderr at the end.
 */
import pino from 'pino';
import type { PersistClient } from '../client/index.js';
import { createPersistClient } from '../client/index.js';
import type { ShardHandle } from '../shard-state/index.js';
import { sleep, sumMetric } from '../util/index.js';
import { type DemoState, demoModel, nextDemoState, wallMs } from './demo-model.js';
import {
  type DemoApplied,
  type DemoCommit,
  type DemoCounters,
  type DemoShardView,
  type DemoWorkerConfig,
  emptyCounters,
  type ParentMessage,
  type WorkerMessage,
} from './demo-protocol.js';

const config = JSON.parse(process.argv[2] ?? 'null') as DemoWorkerConfig | null;
if (config === null || typeof process.send !== 'function') {
  process.stderr.write(
    'demo-worker: started by `persist-pubsub demo` only (needs IPC and a config)\n',
  );
  process.exit(2);
}
const cfg: DemoWorkerConfig = config;

let finished = false;
// The parent went away (crash, SIGKILL): leave at once, never linger as an orphan.
process.on('disconnect', () => process.exit(finished ? 0 : 1));

const send = (m: WorkerMessage): Promise<void> =>
  new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send?.(m, undefined, {}, () => resolve());
  });

const counters: DemoCounters = emptyCounters();
const failures: string[] = [];
let commits: DemoCommit[] = [];
let applied: DemoApplied[] = [];
const shardIndex = new Map(cfg.shards.map((s, i) => [s, i]));

function fail(what: string, err: unknown): void {
  counters.errors++;
  const message = `${cfg.name}: ${what}: ${err instanceof Error ? err.message : String(err)}`;
  if (failures.length < 20) failures.push(message);
  process.stderr.write(`${message}\n`);
}

// Library logs: errors are forwarded to stderr and counted; warnings are counted only (a
// connection that closes because pubsub was switched off may warn, and that is expected).
const logger = pino(
  { level: 'warn', base: { worker: cfg.name } },
  {
    write(line: string) {
      const level = (JSON.parse(line) as { level?: number }).level ?? 0;
      if (level >= 50) {
        counters.errors++;
        process.stderr.write(line);
      } else if (level >= 40) counters.warnings++;
    },
  },
);

async function readCounters(client: PersistClient): Promise<DemoCounters> {
  const r = client.registry;
  counters.reads = await sumMetric(
    r,
    'persist_pubsub_consensus_ops_total',
    (l) => l.op === 'head' || l.op === 'scan',
  );
  counters.polls = await sumMetric(
    r,
    'persist_pubsub_state_consensus_reads_total',
    (l) => l.reason === 'poll',
  );
  // Only overflow: pushes skipped while pubsub is switched off or reconnecting are by design.
  counters.pushDrops = await sumMetric(
    r,
    'persist_pubsub_client_pushes_dropped_total',
    (l) => l.reason === 'queue_full',
  );
  counters.invalidDiffs = await sumMetric(r, 'persist_pubsub_state_diff_invalid_total');
  return { ...counters };
}

async function tick(client: PersistClient): Promise<void> {
  const c = commits;
  const a = applied;
  commits = [];
  applied = [];
  await send({
    type: 'tick',
    counters: await readCounters(client),
    commits: c,
    applied: a,
    connected: client.pubsub.status.state === 'connected',
  });
}

/** Commits to one shard every `intervalMs` until stopped; returns the commits made. */
async function writeShard(h: ShardHandle<DemoState>, stop: AbortSignal): Promise<number> {
  const shard = shardIndex.get(h.shardId) ?? -1;
  let made = 0;
  // Shards are spread over the interval: a synchronous SQLite commit blocks this process's
  // event loop, so commits due at one instant would hold back each other's pushes.
  const spreadMs = (cfg.intervalMs / cfg.shards.length) * shard;
  let due = performance.now() + cfg.offsetMs + spreadMs;
  while (!stop.aborted) {
    // A stop ends the sleep early; the loop condition then ends the loop.
    await sleep(due - performance.now(), { signal: stop }).catch(() => {});
    if (stop.aborted) break;
    try {
      // No signal: aborting a compare-and-set in flight would leave it indeterminate.
      const startMs = wallMs();
      const r = await h.update((s) => nextDemoState(s, wallMs()));
      const doneMs = wallMs();
      if (r.outcome === 'committed') {
        made++;
        counters.commits++;
        commits.push([shard, r.state.n, startMs, doneMs]);
      }
    } catch (err) {
      fail(`update of ${h.shardId}`, err);
      break;
    }
    // A slow commit does not cause a burst: the schedule moves on.
    due = Math.max(due + cfg.intervalMs, performance.now());
  }
  return made;
}

/** Follows one shard, reporting when each commit was applied here. */
async function readShard(h: ShardHandle<DemoState>, stop: AbortSignal): Promise<void> {
  const shard = shardIndex.get(h.shardId) ?? -1;
  let seqno = h.seqno;
  let seen = h.state.n;
  while (!stop.aborted) {
    let v: { seqno: bigint; state: DemoState };
    try {
      v = await h.waitForSeqno(seqno + 1n, { signal: stop });
    } catch (err) {
      if (stop.aborted) break;
      fail(`waiting on ${h.shardId}`, err);
      break;
    }
    const now = wallMs();
    for (let k = seen + 1; k <= v.state.n; k++) applied.push([shard, k, now]);
    seen = Math.max(seen, v.state.n);
    seqno = v.seqno;
  }
}

const client = await createPersistClient({
  consensus: cfg.consensus,
  pubsub: cfg.pubsub,
  callerId: `demo-${cfg.name}`,
  flagsFile: cfg.flagsFile,
  logger,
});
const handles = await Promise.all(cfg.shards.map((s) => client.openShard(s, demoModel)));
// Connecting never blocks; wait (bounded) for the stream so the first pushes are not lost.
for (let i = 0; i < 500 && client.pubsub.status.state !== 'connected'; i++) {
  if (!client.flags.get().persist_pubsub_client_enabled) break;
  await new Promise((r) => setTimeout(r, 10));
}
const ticker = setInterval(() => {
  tick(client).catch((err: unknown) => fail('report', err));
}, cfg.tickMs);
ticker.unref();

const stop = new AbortController();
let work: Promise<unknown> = Promise.resolve();
const commitsByShard: Record<string, number> = {};

async function finish(heads: Readonly<Record<string, string>>): Promise<void> {
  const views: Record<string, DemoShardView> = {};
  if (cfg.role === 'writer') {
    stop.abort();
    await work;
  } else {
    // Keep following (and measuring) while waiting for the final heads, then stop.
    await Promise.all(
      handles.map(async (h) => {
        const head = heads[h.shardId];
        if (head === undefined) return;
        try {
          await h.waitForSeqno(BigInt(head), { signal: AbortSignal.timeout(5000) });
        } catch (err) {
          fail(`reaching head ${head} of ${h.shardId} (at ${h.seqno})`, err);
        }
      }),
    );
    stop.abort();
    await work;
    for (const h of handles) {
      const s = h.state;
      views[h.shardId] = { seqno: String(h.seqno), n: s.n, lastStamp: s.stamps.at(-1) ?? null };
    }
  }
  clearInterval(ticker);
  if (process.env.PERSIST_PUBSUB_DEMO_DEBUG) {
    for (const name of [
      'persist_pubsub_state_consensus_reads_total',
      'persist_pubsub_state_fetch_total',
      'persist_pubsub_state_diff_applied_total',
      'persist_pubsub_state_diff_out_of_order_total',
      'persist_pubsub_state_diff_stale_total',
      'persist_pubsub_client_pushes_dropped_total',
      'persist_pubsub_consensus_ops_total',
      'persist_pubsub_e2e_latency_seconds',
      'persist_pubsub_client_receive_lagged_total',
      'persist_pubsub_state_gap_to_applied_seconds',
    ]) {
      const v = await client.registry.getSingleMetric(name)?.get();
      process.stderr.write(
        `${cfg.name} ${name} ${JSON.stringify(v?.values.map((x) => [x.labels, x.value]))}\n`,
      );
    }
  }
  await tick(client);
  await send({
    type: 'done',
    counters: await readCounters(client),
    commitsByShard,
    views,
    failures,
  });
  finished = true;
  for (const h of handles) h.close();
  await client.close();
  process.disconnect();
}

process.on('message', (raw: unknown) => {
  const m = raw as ParentMessage;
  if (m.type === 'start') {
    work =
      cfg.role === 'writer'
        ? Promise.all(
            handles.map(async (h) => {
              commitsByShard[h.shardId] = await writeShard(h, stop.signal);
            }),
          )
        : Promise.all(handles.map((h) => readShard(h, stop.signal)));
  } else if (m.type === 'stop' || m.type === 'finish') {
    finish(m.type === 'finish' ? m.heads : {}).catch((err: unknown) => {
      fail('finishing', err);
      process.exit(1);
    });
  }
});
await send({ type: 'ready' });
