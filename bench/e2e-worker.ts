/**
 * A writer or reader process of the end-to-end benchmark (forked by `bench/e2e.ts` with an IPC
 * channel and a JSON config as its argument), using the SDK exactly as an application would:
 * `createPersistClient` with a Consensus URL and the broker's URL (or no pubsub: polling only).
 *
 * - A writer commits to each of its shards at `ratePerShard`, on a fixed schedule that starts at
 *   the parent's `t0` (shard g's commit k is due at t0 + (g / totalShards + k) / rate, so
 *   commits are spread evenly over time; with `writerSlotMs` the phases fall on slots of that
 *   many ms), on one timer (`commit-schedule.ts`). A commit that is late (the process fell
 *   behind) is made as soon as it can, never skipped, and carries its scheduled time: readers
 *   measure latency from the schedule, so a stalled writer cannot hide its own delay
 *   (coordinated omission). It reports each commit as (shard, n, due, start, done).
 * - A reader follows every shard and reports (shard, n, observed) for each commit as soon as a
 *   version at or past it is applied here: with `readerApi` `wait` (the default) by a
 *   `waitForSeqno` loop per shard, as an application that awaits each version; with `callback`
 *   by `onVersion`, as one that follows every version (no promise per update).
 * On `stats` it answers with its own CPU time and Consensus read counters (client registry);
 * with `stallLog` it keeps its event-loop stalls and GC pauses (`stall-log.ts`) and answers
 * `stall-log` with them.
 */
import { setMaxListeners } from 'node:events';
import pino from 'pino';
import { Registry } from 'prom-client';
import {
  type Consensus,
  instrumentConsensus,
  openSqliteConsensus,
  type SqliteSynchronous,
} from '../src/consensus/index.js';
import { createPersistClient, type ShardHandle } from '../src/index.js';
import { sumMetric } from '../src/util/index.js';
import { CommitSchedule, commitPhaseMs } from './commit-schedule.js';
import { type BenchState, benchModel, padFor, wallMs } from './e2e-model.js';
import { startStallLog } from './stall-log.js';

export interface E2eWorkerConfig {
  role: 'writer' | 'reader';
  name: string;
  consensus: string;
  /** A grpc:// URL, or 'none' (polling only). */
  pubsub: string;
  shards: string[];
  /** The global index of `shards[0]` (writers own consecutive slices). */
  shardBase: number;
  totalShards: number;
  ratePerShard: number;
  diffMinBytes: number;
  diffMaxBytes: number;
  /** For a `sqlite:` Consensus: commit durability (`PRAGMA synchronous`). */
  sqliteSynchronous: SqliteSynchronous;
  /** The sender's write window, `persist_pubsub_client_write_window_us`. */
  writeWindowUs: number;
  /** Keep a stall log (`bench e2e --stall-log`). */
  stallLog?: boolean;
  /** Writers: shards' phases rounded down to multiples of this many ms (0: spread evenly). */
  writerSlotMs: number;
  /** Readers: how they follow each shard (`bench e2e --reader-api`); absent: `wait`. */
  readerApi?: ReaderApi;
}

/** `wait`: a `waitForSeqno` loop per shard; `callback`: `onVersion` per shard. */
export type ReaderApi = 'wait' | 'callback';

export interface E2eWorkerStats {
  type: 'stats';
  name: string;
  pid: number;
  cpuUs: number;
  rss: number;
  /** Consensus head + scan calls. */
  reads: number;
  /** Of which reads for the polling fallback. */
  polls: number;
  pushDrops: number;
  gaps: number;
  commits: number;
  observed: number;
  errors: number;
}

const cfg = JSON.parse(process.argv[2] ?? 'null') as E2eWorkerConfig | null;
if (cfg === null || typeof process.send !== 'function') {
  process.stderr.write('e2e-worker: forked by bench/e2e.ts only (needs IPC and a config)\n');
  process.exit(2);
}
const config: E2eWorkerConfig = cfg;
process.on('disconnect', () => process.exit(0));
const send = (m: unknown) => {
  if (process.connected) process.send?.(m);
};

let errors = 0;
let commits = 0;
let observed = 0;
let records: number[] = [];
function fail(what: string, err: unknown): void {
  errors++;
  if (errors <= 10) {
    process.stderr.write(
      `${config.name}: ${what}: ${err instanceof Error ? err.message : String(err)}\n`,
    );
  }
}

const stallLog = config.stallLog === true ? startStallLog({ name: config.name }) : undefined;

const logger = pino({ level: 'error', base: { worker: config.name } }, pino.destination(2));

const pubsubOn = config.pubsub !== 'none';
const registry = new Registry();
// SQLite is opened here (not from the URL) to choose its durability; instrumented like
// `openConsensus` does, so its reads are counted the same way as Postgres's.
let ownConsensus: Consensus | undefined;
if (config.consensus.startsWith('sqlite:')) {
  const inner = await openSqliteConsensus(config.consensus.slice('sqlite:'.length), {
    synchronous: config.sqliteSynchronous,
    logger,
  });
  ownConsensus = instrumentConsensus(inner, { registry });
}
const client = await createPersistClient({
  consensus: ownConsensus ?? config.consensus,
  registry,
  pubsub: pubsubOn ? config.pubsub : 'none',
  callerId: `bench-${config.name}`,
  logger,
  config: { persist_pubsub_client_write_window_us: config.writeWindowUs },
});
const handles: ShardHandle<BenchState>[] = [];
for (let i = 0; i < config.shards.length; i += 50) {
  const batch = config.shards.slice(i, i + 50);
  handles.push(...(await Promise.all(batch.map((s) => client.openShard(s, benchModel)))));
}
for (let i = 0; pubsubOn && i < 1000 && client.pubsub.status.state !== 'connected'; i++) {
  await new Promise((r) => setTimeout(r, 10));
}
if (pubsubOn && client.pubsub.status.state !== 'connected') {
  fail('connect', new Error(`pubsub not connected after 10 s: ${client.pubsub.status.state}`));
}

async function stats(): Promise<E2eWorkerStats> {
  const r = client.registry;
  const cpu = process.cpuUsage();
  return {
    type: 'stats',
    name: config.name,
    pid: process.pid,
    cpuUs: cpu.user + cpu.system,
    rss: process.memoryUsage().rss,
    reads: await sumMetric(
      r,
      'persist_pubsub_consensus_ops_total',
      (l) => l.op === 'head' || l.op === 'scan',
    ),
    polls: await sumMetric(
      r,
      'persist_pubsub_state_consensus_reads_total',
      (l) => l.reason === 'poll',
    ),
    pushDrops: await sumMetric(
      r,
      'persist_pubsub_client_pushes_dropped_total',
      (l) => l.reason === 'queue_full',
    ),
    gaps: await sumMetric(r, 'persist_pubsub_client_catch_up_fetches_total'),
    commits,
    observed,
    errors,
  };
}

const stop = new AbortController();
// Every reader's loop waits on it.
setMaxListeners(0, stop.signal);
/** `stop.signal.aborted`, as a plain variable for the reader loops' per-update checks. */
let stopped = false;
stop.signal.addEventListener('abort', () => {
  stopped = true;
});

/** One writer schedule for all of this process's shards (`commit-schedule.ts`). */
function writeShards(t0: number): CommitSchedule {
  const periodMs = 1000 / config.ratePerShard;
  const span = config.diffMaxBytes - config.diffMinBytes;
  const schedule = new CommitSchedule({
    phasesMs: handles.map((_, i) =>
      commitPhaseMs(config.shardBase + i, config.totalShards, periodMs, config.writerSlotMs),
    ),
    periodMs,
    t0,
    nowMs: wallMs,
    setTimer: (fn, ms) => void setTimeout(fn, ms),
    setImmediate: (fn) => void setImmediate(fn),
    commit: (i, due) => commit(handles[i] as ShardHandle<BenchState>, config.shardBase + i, due),
  });
  schedule.start();
  return schedule;

  async function commit(h: ShardHandle<BenchState>, g: number, due: number): Promise<void> {
    const pad = padFor(config.diffMinBytes + Math.random() * span);
    let start = 0;
    try {
      // No signal: aborting a compare-and-set in flight would leave it indeterminate.
      const r = await h.update((s) => {
        start = wallMs();
        return { n: s.n + 1, due, start, pad };
      });
      const done = wallMs();
      commits++;
      records.push(g, r.state.n, due, start, done);
    } catch (err) {
      fail(`update of ${h.shardId}`, err);
    }
  }
}

/** Every reader loop's wait options (one object: the loop adds nothing of its own per wait). */
const waitOptions = { signal: stop.signal };

async function readShard(h: ShardHandle<BenchState>, g: number): Promise<void> {
  let seqno = h.seqno;
  let seen = h.state.n;
  while (!stopped) {
    let v: { seqno: bigint; state: BenchState };
    try {
      v = await h.waitForSeqno(seqno + 1n, waitOptions);
    } catch (err) {
      if (!stopped) fail(`waiting on ${h.shardId}`, err);
      return;
    }
    const now = wallMs();
    for (let n = seen + 1; n <= v.state.n; n++) {
      records.push(g, n, now);
      observed++;
    }
    seen = Math.max(seen, v.state.n);
    seqno = v.seqno;
  }
}

/** A reader's follow of one shard by `onVersion`: records each commit in the callback. */
function followShard(h: ShardHandle<BenchState>, g: number): void {
  let seen = h.state.n;
  h.onVersion((v) => {
    const n = v.state.n;
    if (n <= seen) return;
    const now = wallMs();
    for (let k = seen + 1; k <= n; k++) {
      records.push(g, k, now);
      observed++;
    }
    seen = n;
  }, waitOptions);
}

function flush(): void {
  if (records.length === 0) return;
  send({ type: 'records', role: config.role, data: records });
  records = [];
}
const flusher = setInterval(flush, 250);
if (process.env.BENCH_DEBUG) {
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    process.stderr.write(
      `${config.name}: tick lag ${(now - last - 1000).toFixed(0)} ms, commits ${commits}, observed ${observed}, errors ${errors}, pubsub ${client.pubsub.status.state}\n`,
    );
    last = now;
  }, 1000).unref();
}

let work: Promise<unknown> = Promise.resolve();
let writing: CommitSchedule | undefined;
process.on('message', (m: { type: string; t0?: number; heads?: Record<string, string> }) => {
  switch (m.type) {
    case 'start': {
      const t0 = m.t0 ?? wallMs();
      if (config.role === 'writer') writing = writeShards(t0);
      else if (config.readerApi === 'callback') {
        // Ended by `stop` (the callbacks' signal): nothing to await.
        for (const [i, h] of handles.entries()) followShard(h, config.shardBase + i);
      } else work = Promise.all(handles.map((h, i) => readShard(h, config.shardBase + i)));
      break;
    }
    case 'stats':
      stats().then(send, (err: unknown) => fail('stats', err));
      break;
    case 'stall-log':
      send({ type: 'stall-log', log: stallLog?.log() ?? null });
      break;
    case 'stop':
      // Writers: stop committing, report the heads.
      stop.abort();
      void Promise.all([work, writing?.stop()]).then(() => {
        flush();
        const heads: Record<string, string> = {};
        for (const h of handles) heads[h.shardId] = String(h.seqno);
        send({ type: 'stopped', heads });
      });
      break;
    case 'finish': {
      // Readers: keep following until every shard reaches the writers' heads (bounded), stop.
      const heads = m.heads ?? {};
      void Promise.all(
        handles.map(async (h) => {
          const head = heads[h.shardId];
          if (head === undefined) return;
          try {
            await h.waitForSeqno(BigInt(head), { signal: AbortSignal.timeout(10_000) });
          } catch (err) {
            fail(`reaching head ${head} of ${h.shardId} (at ${h.seqno})`, err);
          }
        }),
      ).then(async () => {
        stop.abort();
        await work;
        flush();
        send({ type: 'finished' });
      });
      break;
    }
    case 'exit':
      clearInterval(flusher);
      stallLog?.stop();
      for (const h of handles) h.close();
      void client
        .close()
        .then(() => ownConsensus?.close())
        .finally(() => process.exit(0));
      setTimeout(() => process.exit(0), 2000).unref();
      break;
  }
});
send({ type: 'ready', pid: process.pid });
