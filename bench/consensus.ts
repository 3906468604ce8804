/**
 * `npm run bench -- consensus [--seconds S] [--backends memory,sqlite,postgres,redis]
 *   [--postgres URL] [--redis URL] [--bytes N] [--sqlite-synchronous full|normal]
 *   [--shards N] [--inflight N]`
 *
 * For every reachable backend: the latency (p50, p99, from an HDR histogram in microseconds),
 * throughput and this process's CPU time per call (user + system, from `process.cpuUsage`) of
 * compare-and-set (appending `--bytes` of data to a key's head), head, and a scan of the last 10
 * versions, each measured by ONE client issuing calls back to back for `--seconds` (so ops/s is
 * the single-client rate, not the backend's capacity). The calls go round-robin over `--shards`
 * keys (default 1; the e2e writes 1000, which spreads a SQLite commit over index pages), with
 * `--inflight` calls outstanding at once (default 1). Prints one Markdown table. Postgres and
 * Redis are probed first and reported as skipped when unreachable.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';
import { type Consensus, openConsensus, openSqliteConsensus } from '../src/consensus/index.js';

const BACKENDS = ['memory', 'sqlite', 'postgres', 'redis'] as const;
type BackendName = (typeof BACKENDS)[number];
const OPS = ['cas', 'head', 'scan'] as const;
type Op = (typeof OPS)[number];
const SCAN_LENGTH = 10;
const WARMUP_OPS = 50;

interface Row {
  backend: string;
  op: Op;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  opsPerSecond: number;
  count: number;
  /** This process's CPU per call, µs: user and system. */
  userUs: number;
  systemUs: number;
}

export const consensusBench = {
  description: 'Consensus compare-and-set, head and scan latency and ops/s, every backend',
  run,
};

async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      seconds: { type: 'string' },
      /** A short run: 0.5 s per operation (unless --seconds says otherwise). */
      quick: { type: 'boolean', default: false },
      backends: { type: 'string', default: BACKENDS.join(',') },
      postgres: {
        type: 'string',
        default:
          process.env.PERSIST_PUBSUB_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
      },
      redis: {
        type: 'string',
        default: process.env.PERSIST_PUBSUB_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
      },
      bytes: { type: 'string', default: '256' },
      'sqlite-synchronous': { type: 'string', default: 'full' },
      shards: { type: 'string', default: '1' },
      inflight: { type: 'string', default: '1' },
    },
  });
  const shards = Number(values.shards);
  if (!Number.isSafeInteger(shards) || shards < 1 || shards > 100_000) {
    throw new Error('--shards must be an integer in [1, 100000]');
  }
  const inflight = Number(values.inflight);
  if (!Number.isSafeInteger(inflight) || inflight < 1 || inflight > shards) {
    throw new Error('--inflight must be an integer in [1, --shards]');
  }
  const seconds = Number(values.seconds ?? (values.quick ? '0.5' : '2'));
  if (!(seconds > 0 && seconds <= 600)) throw new Error('--seconds must be in (0, 600]');
  const bytes = Number(values.bytes);
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error('--bytes must be an integer >= 0');
  const synchronous = values['sqlite-synchronous'];
  if (synchronous !== 'full' && synchronous !== 'normal') {
    throw new Error('--sqlite-synchronous must be full or normal');
  }
  const wanted = values.backends.split(',').map((b) => b.trim());
  for (const b of wanted) {
    if (!(BACKENDS as readonly string[]).includes(b)) {
      throw new Error(`unknown backend ${b}; known: ${BACKENDS.join(', ')}`);
    }
  }

  const dir = mkdtempSync(join(tmpdir(), 'persist-pubsub-bench-'));
  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    for (const backend of wanted as BackendName[]) {
      let label: string = backend;
      let consensus: Consensus;
      try {
        switch (backend) {
          case 'memory':
            consensus = await openConsensus('mem:');
            break;
          case 'sqlite':
            label = `sqlite (file, synchronous=${synchronous})`;
            consensus = await openSqliteConsensus(join(dir, 'bench.db'), { synchronous });
            break;
          case 'postgres':
          case 'redis': {
            const url = backend === 'postgres' ? values.postgres : values.redis;
            if (!(await reachable(url))) {
              notes.push(`${backend}: skipped, ${redact(url)} is unreachable`);
              continue;
            }
            consensus = await openConsensus(url);
            break;
          }
        }
      } catch (err) {
        notes.push(`${backend}: skipped, cannot open: ${err instanceof Error ? err.message : err}`);
        continue;
      }
      try {
        rows.push(...(await measure(label, consensus, { seconds, bytes, shards, inflight })));
      } finally {
        await consensus.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  console.log(
    `One client, calls back to back, ${seconds} s per operation, ${bytes}-byte versions, ` +
      `scan = last ${SCAN_LENGTH} versions, ${shards} shard(s), ${inflight} call(s) in flight, ` +
      `load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} at the end. Node ${process.version}.\n`,
  );
  console.log(
    '| backend | op | p50 (µs) | p99 (µs) | max (µs) | ops/s | calls | CPU µs/call (user + sys) |',
  );
  console.log('|---|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.backend} | ${r.op} | ${r.p50Us} | ${r.p99Us} | ${r.maxUs} | ` +
        `${Math.round(r.opsPerSecond)} | ${r.count} | ` +
        `${(r.userUs + r.systemUs).toFixed(1)} (${r.userUs.toFixed(1)} + ${r.systemUs.toFixed(1)}) |`,
    );
  }
  for (const note of notes) console.log(`\n- ${note}`);
}

interface MeasureOptions {
  seconds: number;
  bytes: number;
  shards: number;
  inflight: number;
}

async function measure(
  backend: string,
  consensus: Consensus,
  { seconds, bytes, shards, inflight }: MeasureOptions,
): Promise<Row[]> {
  const run = randomUUID();
  const keys = Array.from({ length: shards }, (_, i) => `bench-${run}-${i}`);
  const heads: (bigint | null)[] = keys.map(() => null);
  const data = new Uint8Array(bytes).map((_, i) => i % 251);
  // Each of the `inflight` lanes owns the keys i with i % inflight === lane, so no CAS races.
  const cursors = Array.from({ length: inflight }, (_, lane) => lane);
  const nextKey = (lane: number): number => {
    const i = cursors[lane] as number;
    cursors[lane] = i + inflight < shards ? i + inflight : lane;
    return i;
  };
  const cas = async (lane: number) => {
    const i = nextKey(lane);
    const head = heads[i] as bigint | null;
    const next = head === null ? 0n : head + 1n;
    const result = await consensus.compareAndSet(keys[i] as string, head, { seqno: next, data });
    if (result !== 'committed') throw new Error(`${backend}: an uncontended CAS lost`);
    heads[i] = next;
  };
  const ops: Record<Op, (lane: number) => Promise<unknown>> = {
    cas,
    head: (lane) => consensus.head(keys[nextKey(lane)] as string),
    scan: async (lane) => {
      const i = nextKey(lane);
      const head = heads[i] ?? 0n;
      const from = head >= BigInt(SCAN_LENGTH - 1) ? head - BigInt(SCAN_LENGTH - 1) : 0n;
      const want = Number(head - from) + 1;
      const got = await consensus.scan(keys[i] as string, from, SCAN_LENGTH);
      if (got.length !== want) throw new Error(`${backend}: scan returned ${got.length}`);
    },
  };
  // Every key gets a version (so head and scan find one), and the code is warm.
  const warmup = async (fn: (lane: number) => Promise<unknown>, calls: number) => {
    await Promise.all(
      cursors.map(async (_, lane) => {
        for (let n = lane; n < calls; n += inflight) await fn(lane);
      }),
    );
  };
  await warmup(cas, Math.max(WARMUP_OPS, shards));
  const rows: Row[] = [];
  for (const op of OPS) {
    const fn = ops[op];
    await warmup(fn, WARMUP_OPS);
    const histogram = hdr.build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 });
    const start = performance.now();
    const end = start + seconds * 1000;
    const cpu0 = process.cpuUsage();
    let count = 0;
    let last = start;
    await Promise.all(
      cursors.map(async (_, lane) => {
        let now = performance.now();
        while (now < end) {
          const t0 = now;
          await fn(lane);
          now = performance.now();
          histogram.recordValue(Math.max(1, Math.round((now - t0) * 1000)));
          count++;
        }
        last = Math.max(last, now);
      }),
    );
    const cpu = process.cpuUsage(cpu0);
    rows.push({
      backend,
      op,
      p50Us: histogram.getValueAtPercentile(50),
      p99Us: histogram.getValueAtPercentile(99),
      maxUs: histogram.maxValue,
      opsPerSecond: count / ((last - start) / 1000),
      count,
      userUs: cpu.user / count,
      systemUs: cpu.system / count,
    });
    histogram.destroy();
  }
  // Leave one version per key behind, not thousands.
  for (let i = 0; i < shards; i++) {
    const head = heads[i];
    if (head !== null && head !== undefined) await consensus.truncate(keys[i] as string, head);
  }
  return rows;
}

/** True if the URL's host:port accepts a TCP connection within 1 s. */
function reachable(url: string): Promise<boolean> {
  let host: string;
  let port: number;
  try {
    const u = new URL(url);
    host = u.hostname || '127.0.0.1';
    port = Number(u.port) || (u.protocol.startsWith('redis') ? 6379 : 5432);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function redact(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, '$1***@');
}
