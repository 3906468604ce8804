/**
 * `npm run bench -- sdk [--quick] [--shards 1000] [--rounds 20] [--chunk 16]
 *   [--diff-min 100] [--diff-max 1024] [--writer-shards 200] [--writer-rounds 10]
 *   [--backends memory,sqlite] [--sqlite-synchronous normal|full] [--paths receive,write]
 *   [--reader-api wait|callback|none] [--cold-lines 256] [--cpu-prof | --heap-prof]`
 *
 * An in-process microbenchmark of the SDK's own cost per diff, with no network and no broker,
 * so that each change to the client and shard state is measured in seconds:
 *
 * - **receive**: what a reader process spends per pushed diff from the transport's `onMessage`
 *   up: the pubsub client's event delivery, the persist client's pump, `receiveDiff` (envelope
 *   and model decode, apply), waking the reader's `waitForSeqno` loop (as `bench/e2e-worker.ts`
 *   follows every shard, with one shared stop signal; `--reader-api callback`: an `onVersion`
 *   callback per shard instead, as `e2e --reader-api callback`; `none`: nobody follows, the
 *   floor) and the metrics. A stub transport hands
 *   the client ready `InboundMessage`s in chunks of `--chunk` per event-loop turn, like a socket
 *   read. The `decode` row adds the transport's decode of each `ProtoPubSubMessage` first.
 * - **shard** (`--paths shard`, not in the default): the shard state's part alone, with cold
 *   caches: `receiveDiff` of each pushed envelope straight into a shard-state cache (envelope and
 *   model decode, apply, reorder and poll bookkeeping, one `onVersion` follower per shard), one
 *   diff at a time in shard rotation, with `--cold-lines` (default 256) random cache lines of a
 *   16 MiB array read after each: what the writers, the broker and the kernel do to a reader's
 *   caches between two of its updates on a shared machine (in the receive rows every shard's
 *   objects stay warm; in the e2e reader each update finds them cold). The sweeps' own CPU,
 *   measured alone before each of the 4 spans, is subtracted: the least span less the least sweep.
 * - **model**: the share of the receive rows that is the state model's own work (the e2e
 *   model's `decodeDiff`, a UTF-8 decode and `JSON.parse` of each diff, and `apply`), run alone
 *   over the same diffs: what is left of a receive row is the SDK's.
 * - **write**: what a writer spends per commit: `update` (diff, envelope encode), the
 *   compare-and-set on each backend, the local apply, and the push through the pubsub client to a
 *   stub transport.
 *
 * Diffs are shaped like the e2e bench's (`bench/e2e-model.ts`: JSON states with a random pad,
 * `--diff-min`–`--diff-max` bytes). Prints CPU µs per diff (user + system, `process.cpuUsage`)
 * and bytes allocated per diff (the V8 heap's growth between and across GCs, from
 * `v8.GCProfiler`), and the load average, since the machine may be shared. `--cpu-prof` profiles
 * each measured span alone (`.tmp/cpu-prof/sdk-*.cpuprofile`, for `bench/report-profile.ts`);
 * `--heap-prof` samples what each span allocates, by function (`sdk-*.heapprofile`, same report).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { GCProfiler, getHeapStatistics } from 'node:v8';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { Registry } from 'prom-client';
import { decodeInbound } from '../src/client/inbound.js';
import {
  createPubSubClient,
  type InboundMessage,
  type PubSubTransport,
} from '../src/client/index.js';
import {
  type Consensus,
  createMemoryConsensus,
  openSqliteConsensus,
  type SqliteSynchronous,
} from '../src/consensus/index.js';
import { ProtoPubSubMessageSchema } from '../src/gen/mz_persist_client/internal/service/pubsub_pb.js';
import { VersionEnvelopeSchema } from '../src/gen/persist_pubsub/state/v1/envelope_pb.js';
import { createPersistClient, type PersistClient, type ShardHandle } from '../src/index.js';
import { createShardStateCache } from '../src/shard-state/index.js';
import { type BenchState, benchModel, padFor, wallMs } from './e2e-model.js';

export const sdkBench = {
  description: 'SDK CPU µs and bytes allocated per diff: receive path and writer path, in-process',
  run,
};

interface Options {
  /** Profile the measured spans only, into `.tmp/cpu-prof/sdk-PATH.cpuprofile`. */
  cpuProf: boolean;
  /** Sample their allocations instead, into `.tmp/cpu-prof/sdk-PATH.heapprofile`. */
  heapProf: boolean;
  shards: number;
  rounds: number;
  chunk: number;
  diffMin: number;
  diffMax: number;
  writerShards: number;
  writerRounds: number;
  backends: string[];
  sqliteSynchronous: SqliteSynchronous;
  readerApi: 'wait' | 'callback' | 'none';
  coldLines: number;
}

interface Pushed {
  shardId: string;
  seqno: bigint;
  diff: Uint8Array;
  originTimestampMs: number;
}

/** A transport with no wire: records pushes, and lets the bench deliver inbound messages. */
interface StubTransport extends PubSubTransport {
  readonly pushed: Pushed[];
  deliver(message: InboundMessage): void;
}

function createStubTransport(): StubTransport {
  let onMessage: ((m: InboundMessage) => void) | undefined;
  const pushed: Pushed[] = [];
  return {
    kind: 'stub',
    pushed,
    deliver(message) {
      onMessage?.(message);
    },
    async connect(options) {
      onMessage = options.onMessage;
      return {
        subscribe: (shardId) => shardId.length,
        unsubscribe: (shardId) => shardId.length,
        push(shardId, seqno, diff, originTimestampMs) {
          pushed.push({ shardId, seqno, diff, originTimestampMs });
          return diff.byteLength;
        },
        bufferedBytes: () => 0,
        close() {
          onMessage = undefined;
        },
      };
    },
  };
}

/**
 * A CPU profile (`--cpu-prof`) or a sampling heap profile (`--heap-prof`: allocations by
 * function, one sample per 128 bytes) of a measured span, written when it ends.
 */
async function startProfile(
  o: Pick<Options, 'cpuProf' | 'heapProf'>,
  name: string,
): Promise<() => Promise<void>> {
  if (!o.cpuProf && !o.heapProf) return async () => {};
  const session = new Session();
  session.connect();
  if (o.cpuProf) {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 100 });
    await session.post('Profiler.start');
  } else {
    await session.post('HeapProfiler.enable');
    // Every sampled allocation, also those collected since (else only what is still live).
    await session.post('HeapProfiler.startSampling', {
      samplingInterval: 128,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  }
  return async () => {
    const { profile } = o.cpuProf
      ? await session.post('Profiler.stop')
      : await session.post('HeapProfiler.stopSampling');
    session.disconnect();
    mkdirSync('.tmp/cpu-prof', { recursive: true });
    const file = join('.tmp/cpu-prof', `sdk-${name}.${o.cpuProf ? 'cpuprofile' : 'heapprofile'}`);
    writeFileSync(file, JSON.stringify(profile));
    console.log(`profile: ${file}`);
  };
}

/** CPU and heap allocation over a span of work. */
function startMeter(): () => { cpuUs: number; allocatedBytes: number; gcs: number } {
  const profiler = new GCProfiler();
  profiler.start();
  const usedAtStart = getHeapStatistics().used_heap_size;
  const cpu = process.cpuUsage();
  return () => {
    const c = process.cpuUsage(cpu);
    const usedAtEnd = getHeapStatistics().used_heap_size;
    const result = profiler.stop();
    // Allocated = the heap's growth up to each GC, plus after the last one.
    let allocated = 0;
    let after = usedAtStart;
    for (const s of result?.statistics ?? []) {
      allocated += Math.max(0, s.beforeGC.heapStatistics.usedHeapSize - after);
      after = s.afterGC.heapStatistics.usedHeapSize;
    }
    allocated += Math.max(0, usedAtEnd - after);
    return {
      cpuUs: c.user + c.system,
      allocatedBytes: allocated,
      gcs: result?.statistics.length ?? 0,
    };
  };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** `--cold-lines`: reads `lines` random cache lines of a 16 MiB array per call. */
function createCacheSweep(lines: number): () => number {
  const junk = new Float64Array((16 << 20) / 8);
  const mask = junk.length - 1;
  let at = 0;
  return () => {
    let x = 0;
    for (let i = 0; i < lines; i++) {
      at = (at + 40_999 * 8) & mask; // a stride of 320 KB and a line: no prefetch helps
      x += junk[at] as number;
    }
    return x;
  };
}

/** CPU µs of `calls` sweeps alone (what `--cold-lines` adds to a measured span). */
function sweepCpuUs(sweep: () => number, calls: number): number {
  const cpu = process.cpuUsage();
  let x = 0;
  for (let i = 0; i < calls; i++) x += sweep();
  const c = process.cpuUsage(cpu);
  return x === -1 ? 0 : c.user + c.system;
}

function shardIdOf(i: number): string {
  return `s00000000-0000-0000-0000-${String(i).padStart(12, '0')}`;
}

async function openClient(consensus: Consensus, transport: StubTransport): Promise<PersistClient> {
  const registry = new Registry();
  const pubsub = createPubSubClient(transport, { registry });
  const client = await createPersistClient({ consensus, registry, pubsub });
  for (let i = 0; i < 1000 && pubsub.status.state !== 'connected'; i++) await turn();
  return client;
}

/** Commits `rounds` e2e-shaped diffs to every handle, shards side by side. */
async function commitRounds(
  handles: ShardHandle<BenchState>[],
  rounds: number,
  o: Options,
): Promise<number> {
  let commits = 0;
  const span = o.diffMax - o.diffMin;
  for (let k = 0; k < rounds; k++) {
    await Promise.all(
      handles.map(async (h) => {
        const pad = padFor(o.diffMin + Math.random() * span);
        const due = wallMs();
        await h.update((s) => ({ n: s.n + 1, due, start: wallMs(), pad }));
        commits++;
      }),
    );
  }
  return commits;
}

interface Row {
  path: string;
  diffs: number;
  cpuUsPerDiff: number;
  bytesPerDiff: number;
  gcs: number;
  note: string;
}

/** The receive path: `rounds` pushes for each of `shards` shards, followed by waiting readers. */
async function receiveBench(o: Options, decode: boolean): Promise<Row> {
  const consensus = createMemoryConsensus();
  const writerTransport = createStubTransport();
  const writer = await openClient(consensus, writerTransport);
  const readerTransport = createStubTransport();
  const reader = await openClient(consensus, readerTransport);
  const ids = Array.from({ length: o.shards }, (_, i) => shardIdOf(i));
  const readers = await Promise.all(ids.map((id) => reader.openShard(id, benchModel)));
  const writers = await Promise.all(ids.map((id) => writer.openShard(id, benchModel)));
  await commitRounds(writers, o.rounds, o);
  // What the broker would forward: one ProtoPubSubMessage per push, in commit order.
  const now = Date.now();
  const messages = writerTransport.pushed.map((p) =>
    toBinary(
      ProtoPubSubMessageSchema,
      create(ProtoPubSubMessageSchema, {
        timestamp: { secs: BigInt(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 },
        message: {
          case: 'pushDiff',
          value: {
            shardId: p.shardId,
            seqno: p.seqno,
            diff: p.diff,
            originTimestamp: {
              secs: BigInt(Math.floor(p.originTimestampMs / 1000)),
              nanos: Math.round((p.originTimestampMs % 1000) * 1e6),
            },
          },
        },
      }),
    ),
  );
  const inbound = messages.map(decodeInbound);
  for (let i = 0; i < 20; i++) await turn(); // the resync fetches after connecting settle

  // Readers as in bench/e2e-worker.ts: one waitForSeqno loop per shard, one shared signal
  // (or an onVersion callback per shard, on the same signal).
  const stop = new AbortController();
  const follow = { signal: stop.signal };
  let observed = 0;
  if (o.readerApi === 'callback') {
    for (const h of readers) {
      h.onVersion(() => {
        observed++;
      }, follow);
    }
  }
  const loops =
    o.readerApi !== 'wait'
      ? []
      : readers.map(async (h) => {
          let seqno = h.seqno;
          while (!stop.signal.aborted) {
            try {
              seqno = (await h.waitForSeqno(seqno + 1n, follow)).seqno;
            } catch {
              return;
            }
            observed++;
          }
        });
  // Nobody counts wakes: wait for the applies instead.
  const applied = () => readers.reduce((n, h) => n + Number(h.seqno), 0);
  const done = () => (o.readerApi === 'none' ? applied() >= o.shards * o.rounds : false);
  await turn();
  const expected = messages.length;
  const stopProfile = await startProfile(o, decode ? 'receive-decode' : 'receive');
  const meter = startMeter();
  for (let i = 0; i < expected; i += o.chunk) {
    const end = Math.min(expected, i + o.chunk);
    for (let j = i; j < end; j++) {
      readerTransport.deliver(decode ? decodeInbound(messages[j]!) : inbound[j]!);
    }
    await turn();
  }
  for (let i = 0; i < 100 && observed < expected && !done(); i++) await turn();
  const m = meter();
  await stopProfile();
  stop.abort();
  await Promise.all(loops);
  for (const h of [...readers, ...writers]) h.close();
  await Promise.all([reader.close(), writer.close()]);
  return {
    path: decode ? 'receive: decode + onMessage → observed' : 'receive: onMessage → observed',
    diffs: expected,
    cpuUsPerDiff: m.cpuUs / expected,
    bytesPerDiff: m.allocatedBytes / expected,
    gcs: m.gcs,
    note: `readers: ${o.readerApi}, ${observed} wakes, ${applied()}/${o.shards * o.rounds} applied`,
  };
}

/** A writer client on a memory Consensus with a stub transport, and its handle on each shard. */
async function openWriters(o: Options) {
  const consensus = createMemoryConsensus();
  const transport = createStubTransport();
  const writer = await openClient(consensus, transport);
  const ids = Array.from({ length: o.shards }, (_, i) => shardIdOf(i));
  const writers = await Promise.all(ids.map((id) => writer.openShard(id, benchModel)));
  return { consensus, transport, writer, ids, writers };
}

/** The shard state's part with cold caches (`--paths shard`): see the file's comment. */
async function shardBench(o: Options): Promise<Row> {
  const { consensus, transport: writerTransport, writer, ids, writers } = await openWriters(o);
  // Opened before the commits, so that every pushed diff is the next one.
  const cache = createShardStateCache({ consensus });
  const readers = await Promise.all(ids.map((id) => cache.open(id, benchModel)));
  await commitRounds(writers, o.rounds, o);
  let observed = 0;
  for (const h of readers) {
    h.onVersion(() => {
      observed++;
    });
  }
  // Shard rotation: every shard's k-th diff, then every shard's (k+1)-th.
  const byShard = new Map<string, Pushed[]>(ids.map((id) => [id, []]));
  for (const p of writerTransport.pushed) byShard.get(p.shardId)?.push(p);
  const order: Pushed[] = [];
  for (let k = 0; k < o.rounds; k++) for (const id of ids) order.push(byShard.get(id)![k]!);
  const sweep = createCacheSweep(o.coldLines);
  const options = { originTimestampMs: 0, receivedAtMs: 0 };
  const spans = 4;
  const per = Math.floor(order.length / spans);
  let bestSpanUs = Number.POSITIVE_INFINITY;
  let bestSweepUs = Number.POSITIVE_INFINITY;
  let allocated = 0;
  let gcs = 0;
  const stopProfile = await startProfile(o, 'shard');
  for (let span = 0, i = 0; span < spans; span++) {
    bestSweepUs = Math.min(bestSweepUs, sweepCpuUs(sweep, per));
    const meter = startMeter();
    for (let j = 0; j < per; j++, i++) {
      const p = order[i]!;
      options.originTimestampMs = p.originTimestampMs;
      cache.receiveDiff(p.shardId, p.seqno, p.diff, options);
      sweep();
    }
    const m = meter();
    bestSpanUs = Math.min(bestSpanUs, m.cpuUs);
    allocated += m.allocatedBytes;
    gcs += m.gcs;
  }
  await stopProfile();
  const diffs = per * spans;
  for (const h of [...readers, ...writers]) h.close();
  cache.close();
  await writer.close();
  return {
    path: `shard: receiveDiff → onVersion, ${o.coldLines} cold lines per diff`,
    diffs,
    cpuUsPerDiff: Math.max(0, bestSpanUs - bestSweepUs) / per,
    bytesPerDiff: allocated / diffs,
    gcs,
    note: `least of ${spans} spans less the least of ${spans} sweeps alone (${(bestSweepUs / per).toFixed(2)} µs per diff); ${observed}/${diffs} observed`,
  };
}

/** The model's own share of the receive path: `decodeDiff` and `apply` of the same diffs. */
async function modelBench(o: Options): Promise<Row> {
  const { transport, writer, ids, writers } = await openWriters(o);
  await commitRounds(writers, o.rounds, o);
  // The model's diff bytes, out of each pushed envelope (not measured).
  const diffs = transport.pushed.map((p) => fromBinary(VersionEnvelopeSchema, p.diff).diff);
  const states = new Map<string, BenchState>();
  for (const id of ids) states.set(id, benchModel.initial());
  const stopProfile = await startProfile(o, 'model');
  const meter = startMeter();
  for (let i = 0; i < diffs.length; i += o.chunk) {
    const end = Math.min(diffs.length, i + o.chunk);
    for (let j = i; j < end; j++) {
      const id = (transport.pushed[j] as Pushed).shardId;
      states.set(
        id,
        benchModel.apply(states.get(id) as BenchState, benchModel.decodeDiff(diffs[j]!)),
      );
    }
    await turn();
  }
  const m = meter();
  await stopProfile();
  for (const h of writers) h.close();
  await writer.close();
  return {
    path: 'model alone: decodeDiff + apply',
    diffs: diffs.length,
    cpuUsPerDiff: m.cpuUs / diffs.length,
    bytesPerDiff: m.allocatedBytes / diffs.length,
    gcs: m.gcs,
    note: 'part of each receive row',
  };
}

/** Commit rounds over the writer's shards before a write row is measured. */
const WRITE_WARMUP_ROUNDS = 40;

/** The writer path on one backend: update → encode → compare-and-set → apply → push. */
async function writeBench(o: Options, backend: string, dir: string): Promise<Row> {
  const consensus =
    backend === 'memory'
      ? createMemoryConsensus()
      : await openSqliteConsensus(join(dir, `write-${Date.now()}.db`), {
          synchronous: o.sqliteSynchronous,
        });
  const transport = createStubTransport();
  const client = await openClient(consensus, transport);
  const ids = Array.from({ length: o.writerShards }, (_, i) => shardIdOf(i));
  const handles = await Promise.all(ids.map((id) => client.openShard(id, benchModel)));
  // Warm-up: the first commit of a shard is a rollup, and the JIT needs some thousands of
  // commits (with 2 rounds the memory row read 52-60 µs per commit, warm 22-28).
  await commitRounds(handles, WRITE_WARMUP_ROUNDS, o);
  const pushedBefore = transport.pushed.length;
  const stopProfile = await startProfile(o, `write-${backend}`);
  const meter = startMeter();
  const commits = await commitRounds(handles, o.writerRounds, o);
  const m = meter();
  await stopProfile();
  const pushes = transport.pushed.length - pushedBefore;
  for (const h of handles) h.close();
  await client.close();
  await consensus.close();
  return {
    path: `write: update → CAS (${backend}) → push`,
    diffs: commits,
    cpuUsPerDiff: m.cpuUs / commits,
    bytesPerDiff: m.allocatedBytes / commits,
    gcs: m.gcs,
    note: `${pushes} pushes`,
  };
}

async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      'heap-prof': { type: 'boolean', default: false },
      shards: { type: 'string' },
      rounds: { type: 'string' },
      chunk: { type: 'string', default: '16' },
      'diff-min': { type: 'string', default: '100' },
      'diff-max': { type: 'string', default: '1024' },
      'writer-shards': { type: 'string' },
      'writer-rounds': { type: 'string' },
      backends: { type: 'string', default: 'memory,sqlite' },
      'sqlite-synchronous': { type: 'string', default: 'normal' },
      /** Which paths to run: receive, write, shard (for a profile of one). */
      paths: { type: 'string', default: 'receive,write' },
      'reader-api': { type: 'string', default: 'wait' },
      'cold-lines': { type: 'string', default: '256' },
    },
  });
  const quick = values.quick;
  const int = (name: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min)
      throw new Error(`--${name} must be an integer >= ${min}`);
    return n;
  };
  const o: Options = {
    cpuProf: values['cpu-prof'],
    heapProf: values['heap-prof'],
    shards: int('shards', values.shards ?? (quick ? '200' : '1000'), 1),
    rounds: int('rounds', values.rounds ?? (quick ? '10' : '20'), 1),
    chunk: int('chunk', values.chunk, 1),
    diffMin: int('diff-min', values['diff-min'], 64),
    diffMax: int('diff-max', values['diff-max'], 64),
    writerShards: int('writer-shards', values['writer-shards'] ?? (quick ? '100' : '200'), 1),
    writerRounds: int('writer-rounds', values['writer-rounds'] ?? (quick ? '5' : '10'), 1),
    backends: values.backends.split(',').map((b) => b.trim()),
    sqliteSynchronous: values['sqlite-synchronous'] as SqliteSynchronous,
    readerApi: values['reader-api'] as Options['readerApi'],
    coldLines: int('cold-lines', values['cold-lines'], 0),
  };
  if (o.readerApi !== 'wait' && o.readerApi !== 'callback' && o.readerApi !== 'none') {
    throw new Error('--reader-api must be wait, callback or none');
  }
  if (o.diffMax < o.diffMin || o.diffMax > 8192) {
    throw new Error('--diff-max must be >= --diff-min and <= 8192');
  }
  for (const b of o.backends) {
    if (b !== 'memory' && b !== 'sqlite') throw new Error(`unknown backend ${b}: memory, sqlite`);
  }
  if (o.sqliteSynchronous !== 'normal' && o.sqliteSynchronous !== 'full') {
    throw new Error('--sqlite-synchronous must be normal or full');
  }
  console.log(
    `receive: ${o.shards} shards × ${o.rounds} diffs, ${o.chunk} per turn, readers ${o.readerApi}; write: ${o.writerShards} shards × ${o.writerRounds} commits; diffs ${o.diffMin}–${o.diffMax} B; load average before: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}\n`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'persist-pubsub-bench-sdk-'));
  const rows: Row[] = [];
  try {
    const paths = values.paths.split(',').map((p) => p.trim());
    if (paths.includes('receive')) {
      // Warm-up (JIT), not reported.
      await receiveBench(
        { ...o, cpuProf: false, heapProf: false, rounds: Math.max(2, Math.ceil(o.rounds / 4)) },
        true,
      );
      rows.push(await receiveBench(o, false));
      rows.push(await receiveBench(o, true));
      rows.push(await modelBench(o));
    }
    if (paths.includes('shard')) {
      await shardBench({ ...o, cpuProf: false, heapProf: false, rounds: 2 }); // warm-up (JIT)
      rows.push(await shardBench(o));
    }
    if (paths.includes('write')) for (const b of o.backends) rows.push(await writeBench(o, b, dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log('| path | diffs | CPU µs/diff | bytes allocated/diff | GCs | note |');
  console.log('|---|---:|---:|---:|---:|---|');
  for (const r of rows) {
    console.log(
      `| ${r.path} | ${r.diffs} | ${r.cpuUsPerDiff.toFixed(1)} | ${Math.round(r.bytesPerDiff)} | ${r.gcs} | ${r.note} |`,
    );
  }
  console.log(
    `\nload average after: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
}
