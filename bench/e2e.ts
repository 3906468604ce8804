/**
 * `npm run bench -- e2e [--quick] [--shards 1000] [--rate 1.5] [--writers 2] [--readers 2]
 *   [--consensus postgres,sqlite] [--modes pubsub,nats,bridged,polling] [--warmup-ms 5000]
 *   [--measure-ms 30000] [--drain-ms 3000] [--diff-min 100] [--diff-max 1024] [--cpu-prof]
 *   [--cpu-prof-interval-us 1000]
 *   [--postgres-url URL] [--sqlite-synchronous normal|full] [--writer-pool-size 32]
 *   [--variant NAME] [--nats-url nats://127.0.0.1:4222] [--write-window-us 0]
 *   [--stall-log] [--stall-ms 20] [--trace-gc] [--writer-slot-ms 0] [--broker-socket tcp|unix]
 *   [--reader-api callback|wait]`
 *
 * End to end through the SDK: W writer and R reader processes (`e2e-worker.ts`, each a
 * `createPersistClient`) over S shards at a per-shard commit rate (the reference load: 1000
 * shards × 1.5 commits/s, diffs 100 B–1 KiB), every reader following every shard; with the
 * broker as its own process (`broker-server.ts`) and pubsub on, or with no pubsub (polling
 * only), on Postgres and on SQLite Consensus. Two more modes (not in the default `--modes`):
 * `nats`, every client on NATS directly (`--nats-url`, no broker), and `bridged`, two broker
 * processes bridged through NATS with the writers on one and the readers on the other. In both
 * the nats-server's CPU (every client of it, so run nothing else on it) counts in the read path.
 * For each phase, over the measurement window:
 * - latency of every (reader, commit) pair, HDR, from the commit's scheduled time (corrected
 *   for coordinated omission: a late writer's delay counts) and from the end of its
 *   compare-and-set (commit → observe proper); also the writers' compare-and-set time;
 * - Consensus reads/s (head + scan, from each client's metrics);
 * - CPU-seconds per observed update of writers, readers, the broker, and Postgres's own
 *   processes (utime + stime from `/proc/<pid>/stat`: our backends by `application_name`, and
 *   every process of the postgres user).
 * SQLite runs with `PRAGMA synchronous = NORMAL` by default (`--sqlite-synchronous full` for the
 * library's default): SQLite commits are serialized across processes, and with FULL each one
 * waits for an fsync (about 4 ms on this VM's disk), which caps the whole machine at about 250
 * commits/s, a sixth of the reference load. Postgres runs as configured (fsync on); each writer
 * process gets a pool of 32 connections (the default 10 holds about 10 compare-and-sets in
 * flight, each waiting for a WAL flush, which is fewer than 750 commits/s per writer need).
 * Its table, `persist_pubsub_bench` (and `_heads`), is the bench's own: dropped before each
 * Postgres phase, so every phase starts empty, as a SQLite phase starts with a new file.
 * `--write-window-us N`: the write window of the broker (`--write-window-us`) and of every client
 * (`persist_pubsub_client_write_window_us`), in µs; 0 (the default) is no window.
 * `--stall-log`: every child (writers, readers, broker) keeps its own event-loop stalls and GC
 * pauses (`stall-log.ts`: a 10 ms timer, opt-in); after the table, each phase's stalls per
 * process and its episodes of (reader, commit) pairs slower than `--stall-ms` (commit →
 * observed), each with the stalls, GC pauses and slow writer updates of every process at that
 * time (`stall-episodes.ts`). `--trace-gc` runs every child under `node --trace-gc`.
 * `--cpu-prof` profiles every child (`.tmp/cpu-prof/`, for `bench/report-profile.ts`), sampling
 * every `--cpu-prof-interval-us` µs (Node's default 1000; 100–250 for line-level detail).
 * `--writer-slot-ms N`: the writers' phases rounded down to multiples of N ms, so the shards of one
 * slot fall due together (a group-commit tick): the same commits per second per shard, in one
 * wake-up per slot instead of about one per commit; 0 (the default) spreads them evenly.
 * `--broker-socket unix` (default `tcp`): in `pubsub` mode the broker listens on a Unix socket
 * and every client dials `unix:PATH` (the sidecar's hop without the TCP/IP stack).
 * `--reader-api callback|wait` (default `callback`): the readers follow each shard with
 * `onVersion` (a callback per applied version: the SDK's API for an application that follows
 * every version), or with a `waitForSeqno` loop (a promise per version, as every run before
 * 2026-12-01 21:30 did; results without `readerApi` were made that way).
 * `--variant NAME` writes `e2e-NAME.json` instead (an extra run with other settings, reported in
 * a section of its own; the targets are judged on `e2e.json`).
 * Results: `bench/results/e2e.json` (`bench/results/quick/` with `--quick`), and the report.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { formatUnixTarget } from '../src/protocol/index.js';
import {
  type Child,
  cdfPoints,
  cpuDelta,
  cpuSnapshot,
  forkChild,
  type LatencySummary,
  loadAverage,
  newHistogram,
  pidsOfUser,
  sleep,
  summarize,
  uidOf,
} from './e2e-child.js';
import { wallMs } from './e2e-model.js';
import type { E2eWorkerConfig, E2eWorkerStats, ReaderApi } from './e2e-worker.js';
import { type BenchRun, resultsDir, writeResult } from './report.js';
import {
  episodeLines,
  findEpisodes,
  type SlowObservation,
  type SlowUpdate,
  stallSummaryLines,
} from './stall-episodes.js';
import type { StallLog } from './stall-log.js';

export const e2eBench = {
  description:
    'end to end through the SDK: commit→observe latency, Consensus reads/s, CPU per observed update; pubsub vs polling, Postgres and SQLite',
  run,
};

export type E2eMode = 'pubsub' | 'nats' | 'bridged' | 'polling';
const E2E_MODES: readonly E2eMode[] = ['pubsub', 'nats', 'bridged', 'polling'];
export type E2eConsensus = 'postgres' | 'sqlite';

export interface E2ePhase {
  consensus: E2eConsensus;
  mode: E2eMode;
  measureSeconds: number;
  /** Commits scheduled inside the window (their observations make the latency figures). */
  commits: number;
  expectedObservations: number;
  observations: number;
  /** (reader, commit) pairs of the window never observed by the end of the run. */
  missing: number;
  /** Scheduled time → observed (coordinated omission corrected; includes the CAS). */
  scheduledToObserved: LatencySummary;
  /** End of the writer's compare-and-set → observed. */
  commitToObserved: LatencySummary;
  /** The writer's update call (compare-and-set included). */
  writerUpdate: LatencySummary;
  /** Scheduled time → the writer's update starting (how far behind the writers ran). */
  writerLag: LatencySummary;
  cdf: { scheduled: { ms: number; p: number }[]; commit: { ms: number; p: number }[] };
  /** Consensus reads per second (head + scan), by kind of process. */
  readsPerSecond: { readers: number; writers: number };
  pollsPerSecond: number;
  commitsPerSecond: number;
  observedPerSecond: number;
  /**
   * CPU-seconds over the window, by kind of process. Postgres: the backends serving the
   * readers' and the writers' connections (told apart by `application_name`), and every process
   * of the postgres user (background writers, other clients of the server included).
   */
  cpuSeconds: CpuFigures;
  /** CPU µs per observed update (CPU over the window / observations in the window). */
  cpuUsPerObserved: CpuFigures & {
    /** readers + broker(s) + nats-server + the readers' Postgres backends: what observing costs. */
    readPath: number;
    /** writers + readers + broker + every postgres process. */
    allProcesses: number;
  };
  pushDrops: number;
  catchUpFetches: number;
  errors: number;
  rssMiB: { writers: number; readers: number; broker: number | null };
  loadAverage: string;
  /** `--stall-log`: each process's stalls, then the slow episodes (printed after the table). */
  stallReport?: string[];
}

export interface E2eResult extends BenchRun {
  kind: 'e2e';
  config: {
    shards: number;
    ratePerShard: number;
    writers: number;
    readers: number;
    diffBytes: [number, number];
    warmupMs: number;
    measureMs: number;
    drainMs: number;
    sqliteSynchronous: 'full' | 'normal';
    /** Postgres connections per writer process (readers keep the default pool). */
    writerPoolSize: number;
    /** Writers' phases on slots of this many ms (0: spread evenly); absent in older results. */
    writerSlotMs?: number;
    /** How the readers follow each shard (`--reader-api`); absent in older results: `wait`. */
    readerApi?: ReaderApi;
  };
  phases: E2ePhase[];
  skipped: string[];
}

export interface CpuFigures {
  writers: number;
  readers: number;
  broker: number | null;
  postgresReaders: number | null;
  postgresWriters: number | null;
  postgresAll: number | null;
  /** The nats-server (nats and bridged modes), all of its clients; null otherwise. */
  natsServer?: number | null;
}

interface Opts {
  shards: number;
  rate: number;
  writers: number;
  readers: number;
  warmupMs: number;
  measureMs: number;
  drainMs: number;
  diffMin: number;
  diffMax: number;
  cpuProf: string | undefined;
  cpuProfIntervalUs: number | undefined;
  postgresUrl: string;
  sqliteSynchronous: 'full' | 'normal';
  writerPoolSize: number;
  natsUrl: string;
  /** The write window of the broker and of every client, µs (`--write-window-us`). */
  writeWindowUs: number;
  stallLog: boolean;
  /** A (reader, commit) pair at least this slow (commit → observed, ms) is in the stall report. */
  stallMs: number;
  traceGc: boolean;
  /** Writers' phases on slots of this many ms (`--writer-slot-ms`; 0: spread evenly). */
  writerSlotMs: number;
  /** `pubsub` mode: the broker on loopback TCP or a Unix socket (`--broker-socket`). */
  brokerSocket: 'tcp' | 'unix';
  /** How the readers follow each shard (`--reader-api`). */
  readerApi: ReaderApi;
}

/** Pids of every process whose command name is `comm` (from `/proc`). */
function pidsNamed(comm: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/comm`, 'utf8').trim() === comm) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

/** True if a TCP connection to the NATS URL's host and port opens within 2 s. */
function natsReachable(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = netConnect({ host: u.hostname, port: Number(u.port || 4222) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function postgresReachable(url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * The bench's own Consensus table, dropped before each Postgres phase so that every phase starts
 * empty, as a SQLite phase does with its fresh file: the shards are new each run, so the rows a
 * run leaves (each shard's last versions) would otherwise pile up run after run (1M rows, 975 MB
 * seen after a day of runs), and a phase's figures would depend on how many runs came before.
 */
const BENCH_TABLE = 'persist_pubsub_bench';

async function dropBenchTables(url: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  try {
    await c.connect();
    await c.query(`DROP TABLE IF EXISTS ${BENCH_TABLE}, ${BENCH_TABLE}_heads`);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Pids of the Postgres backends serving our clients (by application_name). */
async function ourBackends(url: string, appName: string): Promise<number[]> {
  const c = new pg.Client({ connectionString: url });
  try {
    await c.connect();
    const r = await c.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE application_name = $1',
      [appName],
    );
    return r.rows.map((x) => x.pid);
  } finally {
    await c.end().catch(() => undefined);
  }
}

interface Snapshot {
  at: number;
  workers: E2eWorkerStats[];
  brokerCpuUs: number | null;
  brokerRss: number | null;
  pg: Map<number, number> | null;
  /** CPU seconds of the nats-server processes (nats and bridged modes). */
  nats: Map<number, number> | null;
}

async function runPhase(
  consensus: E2eConsensus,
  mode: E2eMode,
  o: Opts,
  runId: string,
): Promise<E2ePhase> {
  const tmp = mkdtempSync(join(tmpdir(), 'ppbench-e2e-'));
  const appName = (role: string) => `ppbench_${runId}_${consensus}_${mode}_${role}`;
  const consensusUrl = (role: 'reader' | 'writer') =>
    consensus === 'sqlite'
      ? `sqlite:${join(tmp, 'consensus.db')}`
      : (() => {
          const u = new URL(o.postgresUrl);
          u.searchParams.set('application_name', appName(role));
          u.searchParams.set('table', BENCH_TABLE);
          if (role === 'writer') u.searchParams.set('pool_size', String(o.writerPoolSize));
          return u.toString();
        })();
  const pgUid = consensus === 'postgres' ? uidOf('postgres') : undefined;
  const shards = Array.from({ length: o.shards }, (_, i) => `s${randomUUID().slice(0, 28)}${i}`);
  const children: Child[] = [];
  let broker: Child | undefined;
  /** bridged: the readers' broker (`broker` is the writers'). */
  let readersBroker: Child | undefined;
  const childOpts = {
    cpuProf: o.cpuProf,
    cpuProfIntervalUs: o.cpuProfIntervalUs,
    traceGc: o.traceGc,
  };
  const stallArg = o.stallLog ? ['--stall-log'] : [];
  try {
    if (consensus === 'postgres') await dropBenchTables(o.postgresUrl);
    let pubsub = 'none';
    let readersPubsub: string | undefined;
    if (mode === 'pubsub') {
      // `--broker-socket unix`: a socket in this phase's temporary directory.
      const socket = o.brokerSocket === 'unix' ? join(tmp, 'broker.sock') : undefined;
      broker = forkChild(
        './broker-server.js',
        ['--default-keepalive', '--write-window-us', String(o.writeWindowUs), ...stallArg],
        {
          ...childOpts,
          ...(socket === undefined
            ? {}
            : { env: { ...process.env, PERSIST_PUBSUB_BENCH_SOCKET: socket } }),
        },
      );
      const ready = await broker.next<{ port: number }>('ready');
      pubsub = socket === undefined ? `grpc://127.0.0.1:${ready.port}` : formatUnixTarget(socket);
    } else if (mode === 'nats') {
      pubsub = o.natsUrl;
    } else if (mode === 'bridged') {
      const bridge = [
        '--bridge',
        o.natsUrl,
        '--default-keepalive',
        '--write-window-us',
        String(o.writeWindowUs),
        ...stallArg,
      ];
      broker = forkChild('./broker-server.js', bridge, childOpts);
      readersBroker = forkChild('./broker-server.js', bridge, childOpts);
      const [w, r] = await Promise.all([
        broker.next<{ port: number }>('ready'),
        readersBroker.next<{ port: number }>('ready'),
      ]);
      pubsub = `grpc://127.0.0.1:${w.port}`;
      readersPubsub = `grpc://127.0.0.1:${r.port}`;
    }
    const natsPids = mode === 'nats' || mode === 'bridged' ? pidsNamed('nats-server') : null;
    const writerRecords: number[][] = [];
    const readerRecords: { reader: string; data: number[] }[] = [];
    const fork = (c: E2eWorkerConfig) => {
      const child = forkChild('./e2e-worker.js', [JSON.stringify(c)], childOpts);
      child.on('records', (m) => {
        if (m.role === 'writer') writerRecords.push(m.data as number[]);
        else readerRecords.push({ reader: c.name, data: m.data as number[] });
      });
      children.push(child);
      return child;
    };
    const base = {
      pubsub,
      totalShards: o.shards,
      ratePerShard: o.rate,
      diffMinBytes: o.diffMin,
      diffMaxBytes: o.diffMax,
      sqliteSynchronous: o.sqliteSynchronous,
      writeWindowUs: o.writeWindowUs,
      stallLog: o.stallLog,
      writerSlotMs: o.writerSlotMs,
    };
    // The first writer creates the Postgres table / SQLite file before the others race to.
    const readers: Child[] = [];
    const writers: Child[] = [];
    const per = Math.ceil(o.shards / o.writers);
    for (let w = 0; w < o.writers; w++) {
      const slice = shards.slice(w * per, (w + 1) * per);
      const child = fork({
        ...base,
        consensus: consensusUrl('writer'),
        role: 'writer',
        name: `writer-${w}`,
        shards: slice,
        shardBase: w * per,
      });
      writers.push(child);
      if (w === 0) await child.next('ready', 120_000);
    }
    for (let r = 0; r < o.readers; r++) {
      readers.push(
        fork({
          ...base,
          pubsub: readersPubsub ?? pubsub,
          consensus: consensusUrl('reader'),
          role: 'reader',
          name: `reader-${r}`,
          shards,
          shardBase: 0,
          readerApi: o.readerApi,
        }),
      );
    }
    await Promise.all(children.slice(1).map((c) => c.next('ready', 180_000)));
    if (o.cpuProf !== undefined) {
      const names = children.map((c, i) => `${i < o.writers ? 'writer' : 'reader'} ${c.proc.pid}`);
      console.log(
        `cpu profiles in ${o.cpuProf}: ${names.join(', ')}, broker ${broker?.proc.pid}` +
          (readersBroker === undefined ? '' : `, readers' broker ${readersBroker.proc.pid}`),
      );
    }

    const t0 = wallMs() + 300;
    for (const c of children) c.send({ type: 'start', t0 });
    const tA = t0 + o.warmupMs;
    const tB = tA + o.measureMs;
    const snapshot = async (): Promise<Snapshot> => {
      const pgPids = pgUid === undefined ? null : pidsOfUser(pgUid);
      const [workers, b, b2] = await Promise.all([
        Promise.all(children.map((c) => c.request<E2eWorkerStats>({ type: 'stats' }, 'stats'))),
        broker?.request<{ cpu: { user: number; system: number }; rss: number }>(
          { type: 'stats' },
          'stats',
        ),
        readersBroker?.request<{ cpu: { user: number; system: number }; rss: number }>(
          { type: 'stats' },
          'stats',
        ),
      ]);
      // bridged: both brokers together.
      const b2Cpu = b2 === undefined ? 0 : b2.cpu.user + b2.cpu.system;
      return {
        at: wallMs(),
        workers,
        brokerCpuUs: b === undefined ? null : b.cpu.user + b.cpu.system + b2Cpu,
        brokerRss: b === undefined ? null : b.rss + (b2?.rss ?? 0),
        pg: pgPids === null ? null : cpuSnapshot(pgPids),
        nats: natsPids === null ? null : cpuSnapshot(natsPids),
      };
    };
    await sleep(tA - wallMs());
    const s0 = await snapshot();
    await sleep(tB - wallMs());
    const s1 = await snapshot();
    const stallLogs = o.stallLog
      ? (
          await Promise.all(
            [...children, broker, readersBroker]
              .filter((c) => c !== undefined)
              .map((c) => c.request<{ log: StallLog | null }>({ type: 'stall-log' }, 'stall-log')),
          )
        )
          .map((r) => r.log)
          .filter((l) => l !== null)
      : [];
    const backends =
      consensus === 'postgres'
        ? {
            reader: await ourBackends(o.postgresUrl, appName('reader')),
            writer: await ourBackends(o.postgresUrl, appName('writer')),
          }
        : undefined;
    await sleep(o.drainMs);
    const stopped = await Promise.all(
      writers.map((w) =>
        w.request<{ heads: Record<string, string> }>({ type: 'stop' }, 'stopped', 60_000),
      ),
    );
    const heads = Object.assign({}, ...stopped.map((s) => s.heads)) as Record<string, string>;
    await Promise.all(readers.map((r) => r.request({ type: 'finish', heads }, 'finished', 60_000)));
    // Let the last record batches arrive.
    await sleep(300);

    // Join reader observations with the writers' commits.
    const commitsByKey = new Map<number, number>(); // key -> offset in the flat writer array
    const flatW = writerRecords.flat();
    const KEY = 1 << 24;
    let commitsInWindow = 0;
    const hLag = newHistogram();
    const hUpdate = newHistogram();
    for (let i = 0; i < flatW.length; i += 5) {
      const g = flatW[i]!;
      const n = flatW[i + 1]!;
      const due = flatW[i + 2]!;
      commitsByKey.set(g * KEY + n, i);
      if (due >= tA && due < tB) {
        commitsInWindow++;
        hLag.recordValue(Math.max(1, Math.round((flatW[i + 3]! - due) * 1000)));
        hUpdate.recordValue(Math.max(1, Math.round((flatW[i + 4]! - flatW[i + 3]!) * 1000)));
      }
    }
    const hSched = newHistogram();
    const hCommit = newHistogram();
    let matched = 0;
    const writerOf = (g: number) => `writer-${Math.floor(g / per)}`;
    const slow: SlowObservation[] = [];
    for (const { reader, data: batch } of readerRecords) {
      for (let i = 0; i < batch.length; i += 3) {
        const at = commitsByKey.get(batch[i]! * KEY + batch[i + 1]!);
        if (at === undefined) continue;
        const due = flatW[at + 2]!;
        if (due < tA || due >= tB) continue;
        const observedAt = batch[i + 2]!;
        matched++;
        hSched.recordValue(Math.max(1, Math.round((observedAt - due) * 1000)));
        hCommit.recordValue(Math.max(1, Math.round((observedAt - flatW[at + 4]!) * 1000)));
        if (o.stallLog && observedAt - flatW[at + 4]! >= o.stallMs) {
          slow.push({
            reader,
            writer: writerOf(batch[i]!),
            committedAt: flatW[at + 4]!,
            observedAt,
          });
        }
      }
    }
    let stallReport: string[] | undefined;
    if (o.stallLog) {
      const slowUpdates: SlowUpdate[] = [];
      for (let i = 0; i < flatW.length; i += 5) {
        const [startAt, doneAt] = [flatW[i + 3]!, flatW[i + 4]!];
        if (doneAt >= tA && startAt < tB && doneAt - startAt >= o.stallMs) {
          slowUpdates.push({ writer: writerOf(flatW[i]!), startAt, doneAt });
        }
      }
      const windowLogs = stallLogs.map((l) => ({
        ...l,
        stalls: l.stalls.filter((x) => x.atMs >= tA && x.atMs < tB),
        gcs: l.gcs.filter((x) => x.atMs >= tA && x.atMs < tB),
      }));
      const episodes = findEpisodes(slow, windowLogs, slowUpdates);
      stallReport = [
        `### ${consensus} ${mode}: stalls in the window (times from its start, ${new Date(tA).toISOString()}; cpu = the main thread on a CPU, runq = runnable, waiting for one, the rest blocked; GC totals since the process started)`,
        '',
        ...stallSummaryLines(windowLogs),
        '',
        `${episodes.length} episodes of commit → observed ≥ ${o.stallMs} ms (${slow.length} pairs); the worst:`,
        '',
        ...episodeLines(episodes, tA),
      ];
    }

    const seconds = (s1.at - s0.at) / 1000;
    const sum = (role: string, f: (w: E2eWorkerStats) => number, s: Snapshot) =>
      s.workers.filter((w) => w.name.startsWith(role)).reduce((a, w) => a + f(w), 0);
    const delta = (role: string, f: (w: E2eWorkerStats) => number) =>
      sum(role, f, s1) - sum(role, f, s0);
    const observedDelta = delta('reader', (w) => w.observed);
    const pgOf = (pids: number[] | undefined) =>
      s0.pg === null || s1.pg === null || pids === undefined
        ? null
        : cpuDelta(s0.pg, new Map([...s1.pg].filter(([pid]) => pids.includes(pid))));
    const cpu: CpuFigures = {
      writers: delta('writer', (w) => w.cpuUs) / 1e6,
      readers: delta('reader', (w) => w.cpuUs) / 1e6,
      broker:
        s1.brokerCpuUs === null || s0.brokerCpuUs === null
          ? null
          : (s1.brokerCpuUs - s0.brokerCpuUs) / 1e6,
      postgresReaders: pgOf(backends?.reader),
      postgresWriters: pgOf(backends?.writer),
      postgresAll: s0.pg === null || s1.pg === null ? null : cpuDelta(s0.pg, s1.pg),
      natsServer: s0.nats === null || s1.nats === null ? null : cpuDelta(s0.nats, s1.nats),
    };
    const natsCpu = cpu.natsServer ?? 0;
    const perObs = (s: number | null) =>
      s === null || observedDelta === 0 ? null : round((s * 1e6) / observedDelta, 2);
    const mib = (b: number) => round(b / 1024 / 1024, 1);
    const phase: E2ePhase = {
      consensus,
      mode,
      measureSeconds: round(seconds, 2),
      commits: commitsInWindow,
      expectedObservations: commitsInWindow * o.readers,
      observations: matched,
      missing: commitsInWindow * o.readers - matched,
      scheduledToObserved: summarize(hSched),
      commitToObserved: summarize(hCommit),
      writerUpdate: summarize(hUpdate),
      writerLag: summarize(hLag),
      cdf: { scheduled: cdfPoints(hSched), commit: cdfPoints(hCommit) },
      readsPerSecond: {
        readers: round(delta('reader', (w) => w.reads) / seconds, 2),
        writers: round(delta('writer', (w) => w.reads) / seconds, 2),
      },
      pollsPerSecond: round(delta('reader', (w) => w.polls) / seconds, 2),
      commitsPerSecond: round(delta('writer', (w) => w.commits) / seconds, 1),
      observedPerSecond: round(observedDelta / seconds, 1),
      cpuSeconds: {
        writers: round(cpu.writers, 3),
        readers: round(cpu.readers, 3),
        broker: orNull(cpu.broker, (x) => round(x, 3)),
        postgresReaders: orNull(cpu.postgresReaders, (x) => round(x, 3)),
        postgresWriters: orNull(cpu.postgresWriters, (x) => round(x, 3)),
        postgresAll: orNull(cpu.postgresAll, (x) => round(x, 3)),
        natsServer: orNull(cpu.natsServer ?? null, (x) => round(x, 3)),
      },
      cpuUsPerObserved: {
        writers: perObs(cpu.writers) ?? 0,
        readers: perObs(cpu.readers) ?? 0,
        broker: perObs(cpu.broker),
        postgresReaders: perObs(cpu.postgresReaders),
        postgresWriters: perObs(cpu.postgresWriters),
        postgresAll: perObs(cpu.postgresAll),
        natsServer: perObs(cpu.natsServer ?? null),
        readPath:
          perObs(cpu.readers + (cpu.broker ?? 0) + natsCpu + (cpu.postgresReaders ?? 0)) ?? 0,
        allProcesses:
          perObs(
            cpu.writers + cpu.readers + (cpu.broker ?? 0) + natsCpu + (cpu.postgresAll ?? 0),
          ) ?? 0,
      },
      pushDrops: delta('writer', (w) => w.pushDrops),
      catchUpFetches: delta('reader', (w) => w.gaps),
      errors: sum('', (w) => w.errors, s1),
      rssMiB: {
        writers: mib(
          Math.max(...s1.workers.filter((w) => w.name.startsWith('writer')).map((w) => w.rss)),
        ),
        readers: mib(
          Math.max(...s1.workers.filter((w) => w.name.startsWith('reader')).map((w) => w.rss)),
        ),
        broker: s1.brokerRss === null ? null : mib(s1.brokerRss),
      },
      loadAverage: loadAverage(),
      stallReport,
    };
    return phase;
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    await broker?.stop();
    await readersBroker?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;
const orNull = (x: number | null, f: (x: number) => number) => (x === null ? null : f(x));

export function printPhase(p: E2ePhase): void {
  const l = (s: LatencySummary) =>
    `${s.p50Ms} / ${s.p90Ms} / ${s.p99Ms} / ${s.p999Ms} / ${s.maxMs}`;
  console.log(
    `| ${p.consensus} | ${p.mode} | ${p.observations}/${p.expectedObservations} | ${l(p.scheduledToObserved)} | ${l(p.commitToObserved)} | ${p.writerUpdate.p50Ms} / ${p.writerUpdate.p99Ms} | ${p.readsPerSecond.readers} | ${p.cpuUsPerObserved.readers} | ${p.cpuUsPerObserved.broker ?? '–'} | ${p.cpuUsPerObserved.postgresReaders ?? '–'} | ${p.cpuUsPerObserved.readPath} | ${p.cpuUsPerObserved.writers} | ${p.pushDrops} | ${p.errors} | ${p.cpuUsPerObserved.natsServer ?? '–'} |`,
  );
}

async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      shards: { type: 'string', default: '1000' },
      rate: { type: 'string', default: '1.5' },
      writers: { type: 'string', default: '2' },
      readers: { type: 'string', default: '2' },
      consensus: { type: 'string', default: 'postgres,sqlite' },
      modes: { type: 'string', default: 'pubsub,polling' },
      'warmup-ms': { type: 'string' },
      'measure-ms': { type: 'string' },
      'drain-ms': { type: 'string' },
      'diff-min': { type: 'string', default: '100' },
      'diff-max': { type: 'string', default: '1024' },
      'cpu-prof': { type: 'boolean', default: false },
      'cpu-prof-interval-us': { type: 'string' },
      'postgres-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/test' },
      'sqlite-synchronous': { type: 'string', default: 'normal' },
      'writer-pool-size': { type: 'string', default: '32' },
      variant: { type: 'string' },
      'nats-url': { type: 'string', default: 'nats://127.0.0.1:4222' },
      'write-window-us': { type: 'string', default: '0' },
      'stall-log': { type: 'boolean', default: false },
      'stall-ms': { type: 'string', default: '20' },
      'trace-gc': { type: 'boolean', default: false },
      'writer-slot-ms': { type: 'string', default: '0' },
      'broker-socket': { type: 'string', default: 'tcp' },
      'reader-api': { type: 'string', default: 'callback' },
    },
  });
  const quick = values.quick;
  if (values.variant !== undefined && !/^[a-z0-9-]{1,40}$/.test(values.variant)) {
    throw new Error('--variant must be a short lowercase name ([a-z0-9-])');
  }
  const num = (name: string, v: string, integer: boolean, min: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
      throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} ≥ ${min}`);
    }
    return n;
  };
  const o: Opts = {
    shards: num('shards', values.shards, true, 1),
    rate: num('rate', values.rate, false, 0.01),
    writers: num('writers', values.writers, true, 1),
    readers: num('readers', values.readers, true, 1),
    warmupMs: num('warmup-ms', values['warmup-ms'] ?? (quick ? '2000' : '5000'), true, 0),
    measureMs: num('measure-ms', values['measure-ms'] ?? (quick ? '6000' : '30000'), true, 1000),
    drainMs: num('drain-ms', values['drain-ms'] ?? (quick ? '2000' : '3000'), true, 0),
    diffMin: num('diff-min', values['diff-min'], true, 64),
    diffMax: num('diff-max', values['diff-max'], true, 64),
    cpuProf: values['cpu-prof'] ? '.tmp/cpu-prof' : undefined,
    cpuProfIntervalUs:
      values['cpu-prof-interval-us'] === undefined
        ? undefined
        : num('cpu-prof-interval-us', values['cpu-prof-interval-us'], true, 10),
    postgresUrl: values['postgres-url'],
    sqliteSynchronous: values['sqlite-synchronous'] as 'full' | 'normal',
    writerPoolSize: num('writer-pool-size', values['writer-pool-size'], true, 1),
    natsUrl: values['nats-url'],
    writeWindowUs: num('write-window-us', values['write-window-us'], true, 0),
    stallLog: values['stall-log'],
    stallMs: num('stall-ms', values['stall-ms'], false, 1),
    traceGc: values['trace-gc'],
    writerSlotMs: num('writer-slot-ms', values['writer-slot-ms'], false, 0),
    brokerSocket: values['broker-socket'] as 'tcp' | 'unix',
    readerApi: values['reader-api'] as ReaderApi,
  };
  if (o.readerApi !== 'wait' && o.readerApi !== 'callback') {
    throw new Error('--reader-api must be wait or callback');
  }
  if (o.brokerSocket !== 'tcp' && o.brokerSocket !== 'unix') {
    throw new Error('--broker-socket must be tcp or unix');
  }
  if (o.sqliteSynchronous !== 'full' && o.sqliteSynchronous !== 'normal') {
    throw new Error('--sqlite-synchronous must be full or normal');
  }
  if (o.diffMax < o.diffMin || o.diffMax > 8192) {
    throw new Error('--diff-max must be ≥ --diff-min and ≤ 8192');
  }
  if (o.writers > o.shards) throw new Error('--writers must be ≤ --shards');
  const backends = values.consensus.split(',') as E2eConsensus[];
  const modes = values.modes.split(',') as E2eMode[];
  for (const b of backends) {
    if (b !== 'postgres' && b !== 'sqlite') throw new Error('--consensus: postgres and/or sqlite');
  }
  for (const m of modes) {
    if (!E2E_MODES.includes(m)) throw new Error(`--modes: one or more of ${E2E_MODES.join(',')}`);
  }
  if (!/^nats:\/\/[^/?#]+$/.test(o.natsUrl)) throw new Error('--nats-url must be nats://HOST:PORT');
  const natsOk =
    modes.includes('nats') || modes.includes('bridged') ? await natsReachable(o.natsUrl) : false;
  const startedAt = new Date().toISOString();
  const loadBefore = loadAverage();
  console.log(
    `${o.shards} shards × ${o.rate} commits/s, diffs ${o.diffMin}–${o.diffMax} B, ${o.writers} writer and ${o.readers} reader processes (each reader follows every shard); ` +
      `warm-up ${o.warmupMs} ms, window ${o.measureMs} ms; write window ${o.writeWindowUs} µs (broker and clients); writer slot ${o.writerSlotMs} ms; broker on ${o.brokerSocket === 'unix' ? 'a Unix socket' : 'loopback TCP'}; readers follow with ${o.readerApi === 'callback' ? 'onVersion' : 'waitForSeqno'}; load average ${loadBefore}.\n` +
      'Latency columns: p50 / p90 / p99 / p99.9 / max in ms. CPU columns: µs per observed update.\n',
  );
  console.log(
    "| consensus | mode | observed | scheduled→observed | commit→observed | writer update p50/p99 | reader Consensus reads/s | readers CPU | broker CPU | Postgres (readers' backends) CPU | read path CPU | writers CPU | push drops | errors | nats-server CPU |",
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  const runId = randomUUID().slice(0, 8);
  const phases: E2ePhase[] = [];
  const skipped: string[] = [];
  const pgOk = backends.includes('postgres') ? await postgresReachable(o.postgresUrl) : false;
  for (const b of backends) {
    if (b === 'postgres' && !pgOk) {
      skipped.push(`postgres: not reachable at ${o.postgresUrl}`);
      console.log(`| postgres | – | SKIPPED: not reachable at ${o.postgresUrl} |`);
      continue;
    }
    for (const m of modes) {
      if ((m === 'nats' || m === 'bridged') && !natsOk) {
        skipped.push(`${b} ${m}: NATS not reachable at ${o.natsUrl}`);
        console.log(`| ${b} | ${m} | SKIPPED: NATS not reachable at ${o.natsUrl} |`);
        continue;
      }
      const p = await runPhase(b, m, o, runId);
      phases.push(p);
      printPhase(p);
    }
  }
  for (const p of phases)
    if (p.stallReport !== undefined) console.log(`\n${p.stallReport.join('\n')}`);
  const result: E2eResult = {
    kind: 'e2e',
    file: values.variant === undefined ? undefined : `e2e-${values.variant}`,
    startedAt,
    quick,
    loadAverageBefore: loadBefore,
    loadAverageAfter: loadAverage(),
    host: undefined,
    config: {
      shards: o.shards,
      ratePerShard: o.rate,
      writers: o.writers,
      readers: o.readers,
      diffBytes: [o.diffMin, o.diffMax],
      warmupMs: o.warmupMs,
      measureMs: o.measureMs,
      drainMs: o.drainMs,
      sqliteSynchronous: o.sqliteSynchronous,
      writerPoolSize: o.writerPoolSize,
      writerSlotMs: o.writerSlotMs,
      readerApi: o.readerApi,
    },
    phases,
    skipped,
  };
  const file = await writeResult(result);
  console.log(
    `\nload average after: ${result.loadAverageAfter}. Results: ${file} (report in ${resultsDir(quick)})`,
  );
}
