/**
 * The broker-kill scenario of issue 16, shared by the fault test (test/fault/brokers.test.ts,
 * which asserts on it) and the bench (`bench/brokers.ts`, which prints it): real broker
 * processes (the built CLI, started by the caller's `startBroker`), an SDK writer committing
 * steadily round-robin over a few shards and an SDK reader following each shard as a listen
 * loop does (always waiting for the next version, so it polls Consensus whenever pubsub leaves
 * it waiting past its first poll), both in this process over one memory Consensus.
 *
 * Phases: steady state; `kill -9` broker 0, a phase on the others; restart it on its port and
 * wait until both clients are back on it; a phase; `kill -9` broker 1 (broker 0 again with one
 * broker), restart it, wait, a phase; stop. What it measures from the start of the first kill:
 * commit → observed latency for every commit (writer's `performance.now()` after the commit
 * returned → the reader's wake with it), the reader's fallback polls, catch-up fetches and
 * Consensus reads per shard (from its metrics and a counting Consensus), how each version came
 * (push or Consensus), the duplicates dropped, and the CPU of this process (writer + reader)
 * and of every broker process (from /proc).
 */
import { readFileSync } from 'node:fs';
import type { PersistClient, PubSubTarget } from '../src/index.js';
import { createMemoryConsensus, createPersistClient } from '../src/index.js';
import { sleep, sumMetric, withLabels } from '../src/util/index.js';

/** One broker process, started by the caller on `port`. */
export interface BrokerProcess {
  readonly pid: number;
  /** SIGKILL; resolves once the process is gone. */
  kill9(): Promise<void>;
  /** SIGTERM; resolves once the process is gone. */
  stop(): Promise<void>;
}

export interface BrokerKillsOptions {
  /** 1 (today: one broker, killed twice) or 2. */
  brokers: number;
  /** With 2 brokers. @default 'replicated' */
  mode?: 'replicated' | 'sharded' | undefined;
  ports: number[];
  startBroker(port: number): Promise<BrokerProcess>;
  /** @default 4 */
  shards?: number | undefined;
  /** Between commits (round-robin over the shards), ms. @default 20 */
  commitIntervalMs?: number | undefined;
  /** Each phase between kills and restarts, ms. @default 1500 */
  phaseMs?: number | undefined;
  /** Which brokers to kill, in order. @default [0, 1] (or [0, 0] with one broker) */
  kills?: number[] | undefined;
  /** Restart each killed broker (and wait for the clients on it) before the next kill. @default true */
  restart?: boolean | undefined;
}

export interface BrokerKillsResult {
  brokers: number;
  mode: string;
  commits: number;
  /** Versions the reader applied from a pushed diff / from a Consensus read, in the window. */
  byPush: number;
  byConsensus: number;
  /** The reader's fallback polls (Consensus reads by the poll timer). */
  polls: number;
  /** The reader's catch-up fetches asked for by pubsub (resync, gap). */
  catchUpFetches: number;
  /** The reader's Consensus scans per shard in the window (any reason). */
  readsByShard: Record<string, number>;
  /** Diff copies dropped as duplicates (several brokers). */
  duplicates: number;
  /** Commit → observed by the reader, ms, over the window. */
  latencyMs: { p50: number; p99: number; max: number; maxByPhase: Record<string, number> };
  /** This process's CPU (writer + reader SDK) and all broker processes', ms, over the window. */
  cpuMs: { client: number; brokers: number };
  windowMs: number;
  /** Shards on each broker (sharded mode), by broker index. */
  shardsOn?: Record<number, string[]> | undefined;
}

const CLK_TCK = 100;

/** utime + stime of a process, ms (0 once it is gone). */
function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
  } catch {
    return 0;
  }
}

const sumOf = (client: PersistClient, name: string, labels: Record<string, string> = {}) =>
  sumMetric(client.registry, name, withLabels(labels));

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

/** The counter model: the state is a number, a diff adds to it. */
const enc = new TextEncoder();
const dec = new TextDecoder();
const counter = {
  name: 'bench-counter',
  initial: () => 0,
  apply: (s: number, d: number) => s + d,
  diff: (a: number, b: number) => b - a,
  isEmptyDiff: (d: number) => d === 0,
  equals: (a: number, b: number) => a === b,
  encodeState: (s: number) => enc.encode(String(s)),
  decodeState: (b: Uint8Array) => Number(dec.decode(b)),
  encodeDiff: (d: number) => enc.encode(String(d)),
  decodeDiff: (b: Uint8Array) => Number(dec.decode(b)),
};

export async function runBrokerKills(options: BrokerKillsOptions): Promise<BrokerKillsResult> {
  const n = options.brokers;
  const mode = n === 1 ? 'single' : (options.mode ?? 'replicated');
  const shardCount = options.shards ?? 4;
  const intervalMs = options.commitIntervalMs ?? 20;
  const phaseMs = options.phaseMs ?? 1500;
  const kills = options.kills ?? (n === 1 ? [0, 0] : [0, 1]);
  const restart = options.restart ?? true;
  const urls = options.ports.slice(0, n).map((p) => `grpc://127.0.0.1:${p}`);
  const procs: (BrokerProcess | undefined)[] = [];
  /** CPU of broker processes already gone. */
  let deadBrokersCpuMs = 0;
  const brokersCpuMs = () =>
    deadBrokersCpuMs + procs.reduce((s, p) => s + (p === undefined ? 0 : processCpuMs(p.pid)), 0);
  for (let i = 0; i < n; i++) procs.push(await options.startBroker(options.ports[i] as number));

  const store = createMemoryConsensus();
  const readsByShard: Record<string, number> = {};
  let counting = false;
  const readerConsensus = {
    ...{ backend: store.backend },
    head: store.head.bind(store),
    compareAndSet: store.compareAndSet.bind(store),
    scan: (key: string, from: bigint, limit: number, o?: Parameters<typeof store.scan>[3]) => {
      if (counting) readsByShard[key] = (readsByShard[key] ?? 0) + 1;
      return store.scan(key, from, limit, o);
    },
    truncate: store.truncate.bind(store),
    listKeys: store.listKeys.bind(store),
    close: async () => {},
  };
  const pubsub: PubSubTarget =
    n === 1 ? (urls[0] as string) : { brokers: urls, mode: mode as 'replicated' | 'sharded' };
  const writer = await createPersistClient({ consensus: store, pubsub, callerId: 'writer' });
  const reader = await createPersistClient({
    consensus: readerConsensus,
    pubsub,
    callerId: 'reader',
  });
  const shardIds = Array.from(
    { length: shardCount },
    (_, i) => `s00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  );
  const connections = (c: PersistClient, url: string): boolean => {
    const set = c.pubsub as { brokers?: () => { url: string; status: { state: string } }[] };
    if (set.brokers === undefined) return c.pubsub.status.state === 'connected';
    return set.brokers().some((b) => b.url === url && b.status.state === 'connected');
  };
  const allUp = (url: string) => connections(writer, url) && connections(reader, url);
  try {
    for (const url of urls) await waitFor(() => allUp(url), 15_000, `clients on ${url}`);
    const writes = await Promise.all(shardIds.map((s) => writer.openShard(s, counter)));
    const reads = await Promise.all(shardIds.map((s) => reader.openShard(s, counter)));
    // Let every subscription reach its broker before the first commit.
    await sleep(200);

    const committedAt = new Map<string, number>();
    const latencies: number[] = [];
    /** The worst commit → observed in each phase (by when it was observed). */
    const maxByPhase: Record<string, number> = {};
    let phase = 'steady';
    let measuring = false;
    let commits = 0;
    let writing = true;
    const writerLoop = (async () => {
      for (let i = 0; writing; i++) {
        const k = i % shardCount;
        const { seqno } = await (writes[k] as (typeof writes)[number]).update((s) => s + 1);
        committedAt.set(`${k}:${seqno}`, performance.now());
        if (measuring) commits++;
        await sleep(intervalMs);
      }
    })();
    let following = true;
    const followers = reads.map(async (h, k) => {
      let seen = h.seqno;
      while (following) {
        const r = await h
          .waitForSeqno(seen + 1n, { signal: AbortSignal.timeout(30_000) })
          .catch(() => undefined);
        if (r === undefined) continue;
        const now = performance.now();
        for (let s = seen + 1n; s <= r.seqno; s++) {
          const at = committedAt.get(`${k}:${s}`);
          committedAt.delete(`${k}:${s}`);
          if (measuring && at !== undefined) {
            latencies.push(now - at);
            maxByPhase[phase] = Math.max(maxByPhase[phase] ?? 0, now - at);
          }
        }
        seen = r.seqno;
      }
    });

    await sleep(phaseMs);
    let shardsOn: Record<number, string[]> | undefined;
    if (mode === 'sharded') {
      const set = writer.pubsub as unknown as { brokerOf(s: string): string | undefined };
      shardsOn = {};
      for (let i = 0; i < n; i++) {
        shardsOn[i] = shardIds.filter((s) => set.brokerOf(s) === urls[i]);
      }
    }
    const before = {
      polls: await sumOf(reader, 'persist_pubsub_state_consensus_reads_total', { reason: 'poll' }),
      catchUps: await sumOf(reader, 'persist_pubsub_client_catch_up_fetches_total'),
      byPush: await sumOf(reader, 'persist_pubsub_e2e_latency_seconds', { path: 'pubsub' }),
      byPoll: await sumOf(reader, 'persist_pubsub_e2e_latency_seconds', { path: 'poll' }),
      duplicates: await sumOf(reader, 'persist_pubsub_client_duplicate_diffs_total'),
    };
    const cpu0 = process.cpuUsage();
    const brokers0 = brokersCpuMs();
    const t0 = performance.now();
    measuring = true;
    counting = true;

    for (const [i, which] of kills.entries()) {
      const proc = procs[which] as BrokerProcess;
      deadBrokersCpuMs += processCpuMs(proc.pid);
      procs[which] = undefined;
      phase = `${i + 1}: broker ${which} killed`;
      await proc.kill9();
      await sleep(phaseMs);
      if (!restart) continue;
      phase = `${i + 1}: broker ${which} restarting`;
      procs[which] = await options.startBroker(options.ports[which] as number);
      await waitFor(() => allUp(urls[which] as string), 20_000, `clients back on ${urls[which]}`);
      phase = `${i + 1}: broker ${which} back`;
      await sleep(phaseMs);
    }
    phase = 'end';

    writing = false;
    await writerLoop;
    const last = await Promise.all(writes.map((h) => h.seqno));
    await Promise.all(
      reads.map((h, k) =>
        h.waitForSeqno(last[k] as bigint, { signal: AbortSignal.timeout(20_000) }),
      ),
    );
    measuring = false;
    counting = false;
    const windowMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const brokersMs = brokersCpuMs() - brokers0;
    following = false;
    // Wake the followers: one more commit per shard.
    await Promise.all(writes.map((h) => h.update((s) => s + 1)));
    await Promise.all(followers);
    for (const h of [...writes, ...reads]) h.close();

    const after = {
      polls: await sumOf(reader, 'persist_pubsub_state_consensus_reads_total', { reason: 'poll' }),
      catchUps: await sumOf(reader, 'persist_pubsub_client_catch_up_fetches_total'),
      byPush: await sumOf(reader, 'persist_pubsub_e2e_latency_seconds', { path: 'pubsub' }),
      byPoll: await sumOf(reader, 'persist_pubsub_e2e_latency_seconds', { path: 'poll' }),
      duplicates: await sumOf(reader, 'persist_pubsub_client_duplicate_diffs_total'),
    };
    latencies.sort((a, b) => a - b);
    return {
      brokers: n,
      mode,
      commits,
      byPush: after.byPush - before.byPush,
      byConsensus: after.byPoll - before.byPoll,
      polls: after.polls - before.polls,
      catchUpFetches: after.catchUps - before.catchUps,
      readsByShard,
      duplicates: after.duplicates - before.duplicates,
      latencyMs: {
        p50: quantile(latencies, 0.5),
        p99: quantile(latencies, 0.99),
        max: latencies[latencies.length - 1] ?? 0,
        maxByPhase,
      },
      cpuMs: { client: (cpu.user + cpu.system) / 1000, brokers: brokersMs },
      windowMs,
      shardsOn,
    };
  } finally {
    await writer.close();
    await reader.close();
    for (const p of procs) await p?.stop();
  }
}
