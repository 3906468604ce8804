/**
 * `npm run bench -- floor [--quick] [--per-wakeup 1] [--layout interleaved|e2e] [--variants a,b,c]
 *   [--warmup-ms 3000] [--measure-ms 20000] [--shards 1000] [--rate-per-shard 1.5]
 *   [--frame-bytes 500] [--sqlite-synchronous normal|full]`
 *
 * What the platform itself costs per event at the e2e reference load's shape, with no SDK and no
 * broker logic: the floors under the per-update targets of issues 13 and 14. The same processes
 * and rates as `bench e2e`: 1000 shards × 1.5 events/s over 2 writer processes (750 events/s
 * each, one `CommitSchedule` timer each, `commit-schedule.ts`), one relay process standing for
 * the broker, 2 reader processes (1,500 frames/s into the relay, 3,000 deliveries/s out of it).
 * One run measures, one variant after the other, each after its own warm-up:
 *
 * - writer (a): the timer wake-up alone (the schedule's due event, counted);
 * - writer (b): (a) + one compare-and-set through the project's `openSqliteConsensus` on a bench
 *   file in a temporary folder (both writers on one file, as in e2e; `synchronous` normal, the
 *   e2e default);
 * - writer (c): (b) + one `--frame-bytes` write to a `node:net` socket to the relay; with it the
 *   relay floor (a bare `node:net` server reading the writers' length-prefixed frames and writing
 *   each to the 2 reader connections, one `socket.write` per frame per reader) and the reader
 *   floor (2 bare `node:net` clients reading into one buffer and counting frames).
 *
 * Each figure is µs of process CPU (utime + stime of all threads, `/proc`, 10 ms ticks) per
 * event, with voluntary and involuntary context switches per event (all threads) and, for the
 * writers, events per timer wake-up; the issues' target beside it (writers ≤ 80 µs per commit on
 * SQLite, broker ≤ 8 µs per delivery, readers ≤ 20 µs per observed update).
 *
 * `--per-wakeup K` makes every K of a writer's shards fall due together (K events per wake-up,
 * the same rate): run it beside K = 1 for the per-wake-up vs per-event split. `--layout e2e`
 * splits the shards in consecutive slices as `bench e2e` does (each writer then runs at 1,500/s
 * in its half of the period and idles in the other), instead of interleaved (750/s each, evenly).
 *
 * Results: `bench/results/floor.json` (`quick/` with `--quick`; `floor-per-wakeup-K`,
 * `floor-layout-e2e` for the other settings). `--quick`: 2 s warm-up per variant (after 1 s the
 * relay and readers still read 30–50 % above their later figures), 5 s windows (about 25 s).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Child, forkChild, loadAverage, procContextSwitches, procCpu } from './e2e-child.js';
import { wallMs } from './e2e-model.js';
import type { FloorReaderConfig, FloorVariant, FloorWriterConfig } from './floor-child.js';
import {
  behindNote,
  FLOOR_TABLE_HEADER,
  type FloorLayout,
  type FloorRow,
  floorResultFile,
  floorRow,
  floorTableLine,
  type ProcSample,
} from './floor-shape.js';
import { type BenchRun, hostInfo, writeResult } from './report.js';
import { UsageError } from './usage.js';

export const floorBench = {
  description:
    'per-event CPU floors at the reference load: timer wake-up, + SQLite CAS, + socket write; bare relay and readers',
  run,
};

/** The issues' per-event targets, µs (issue 13 items 1–2, issue 14 item 1). */
export const FLOOR_TARGETS_US = { writer: 80, relay: 8, reader: 20 } as const;

const VARIANT_LABELS: Record<FloorVariant, string> = {
  a: 'writer (a) timer wake-up',
  b: 'writer (b) + SQLite compare-and-set',
  c: 'writer (c) + CAS + 500 B socket write',
};

export interface FloorConfig {
  shards: number;
  ratePerShard: number;
  writers: number;
  readers: number;
  layout: FloorLayout;
  perWakeup: number;
  frameBytes: number;
  sqliteSynchronous: 'full' | 'normal';
  variants: FloorVariant[];
  warmupMs: number;
  measureMs: number;
}

export interface FloorResult extends BenchRun {
  kind: 'floor';
  config: FloorConfig;
  rows: FloorRow[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sample(pid: number): ProcSample {
  const c = procCpu(pid);
  if (c === undefined) throw new Error(`pid ${pid} exited`);
  return { ...c, ...procContextSwitches(pid) };
}

const pidOf = (c: Child) => c.proc.pid ?? 0;

interface Counts {
  writers: { events: number; wakeups: number }[];
  relay: { received: number; delivered: number; readers: number };
  readers: { frames: number }[];
}

async function counts(writers: Child[], relay: Child, readers: Child[]): Promise<Counts> {
  const [w, r, rd] = await Promise.all([
    Promise.all(
      writers.map((c) => c.request<Counts['writers'][number]>({ type: 'count' }, 'count')),
    ),
    relay.request<Counts['relay']>({ type: 'count' }, 'count'),
    Promise.all(
      readers.map((c) => c.request<Counts['readers'][number]>({ type: 'count' }, 'count')),
    ),
  ]);
  return { writers: w, relay: r, readers: rd };
}

const sum = (xs: number[]) => xs.reduce((a, x) => a + x, 0);

/** One variant: start the writers on a common t0, warm up, measure the window, stop them. */
async function runVariant(
  variant: FloorVariant,
  o: FloorConfig,
  writers: Child[],
  relay: Child,
  readers: Child[],
): Promise<FloorRow[]> {
  const t0 = wallMs() + 100;
  await Promise.all(writers.map((w) => w.request({ type: 'start', variant, t0 }, 'start')));
  await sleep(t0 - wallMs() + o.warmupMs);
  const all = [...writers, relay, ...readers];
  const c0 = await counts(writers, relay, readers);
  const s0 = all.map((c) => sample(pidOf(c)));
  const started = wallMs();
  await sleep(o.measureMs);
  const c1 = await counts(writers, relay, readers);
  const s1 = all.map((c) => sample(pidOf(c)));
  const seconds = (wallMs() - started) / 1000;
  await Promise.all(writers.map((w) => w.request({ type: 'stop' }, 'stop')));
  const nw = writers.length;
  const rows = [
    floorRow({
      role: 'writer',
      label: VARIANT_LABELS[variant].replace('500 B', `${o.frameBytes} B`),
      event: 'commit',
      before: s0.slice(0, nw),
      after: s1.slice(0, nw),
      events: sum(c1.writers.map((w, i) => w.events - (c0.writers[i]?.events ?? 0))),
      wakeups: sum(c1.writers.map((w, i) => w.wakeups - (c0.writers[i]?.wakeups ?? 0))),
      seconds,
      targetUs: FLOOR_TARGETS_US.writer,
    }),
  ];
  if (variant === 'c') {
    rows.push(
      floorRow({
        role: 'relay',
        label: 'relay: bare net, 1 write per frame per reader',
        event: 'delivery',
        before: s0.slice(nw, nw + 1),
        after: s1.slice(nw, nw + 1),
        events: c1.relay.delivered - c0.relay.delivered,
        seconds,
        targetUs: FLOOR_TARGETS_US.relay,
      }),
      floorRow({
        role: 'reader',
        label: 'reader: bare net, read and count',
        event: 'frame read',
        before: s0.slice(nw + 1),
        after: s1.slice(nw + 1),
        events: sum(c1.readers.map((r, i) => r.frames - (c0.readers[i]?.frames ?? 0))),
        seconds,
        targetUs: FLOOR_TARGETS_US.reader,
      }),
    );
  }
  for (const r of rows) console.log(floorTableLine(r));
  return rows;
}

function parse(args: string[]): { o: FloorConfig; quick: boolean } {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      'per-wakeup': { type: 'string', default: '1' },
      layout: { type: 'string', default: 'interleaved' },
      variants: { type: 'string', default: 'a,b,c' },
      'warmup-ms': { type: 'string' },
      'measure-ms': { type: 'string' },
      shards: { type: 'string', default: '1000' },
      'rate-per-shard': { type: 'string', default: '1.5' },
      'frame-bytes': { type: 'string', default: '500' },
      'sqlite-synchronous': { type: 'string', default: 'normal' },
    },
  });
  const quick = values.quick;
  const int = (name: string, v: string, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new UsageError(`--${name} must be an integer in [${min}, ${max}]`);
    }
    return n;
  };
  const layout = values.layout;
  if (layout !== 'interleaved' && layout !== 'e2e') {
    throw new UsageError('--layout must be interleaved or e2e');
  }
  const sync = values['sqlite-synchronous'];
  if (sync !== 'normal' && sync !== 'full') {
    throw new UsageError('--sqlite-synchronous must be normal or full');
  }
  const variants = values.variants.split(',');
  if (variants.length === 0 || !variants.every((v) => v === 'a' || v === 'b' || v === 'c')) {
    throw new UsageError('--variants is a comma-separated subset of a,b,c');
  }
  const rate = Number(values['rate-per-shard']);
  if (!(rate > 0 && rate <= 100)) throw new UsageError('--rate-per-shard must be in (0, 100]');
  const shards = int('shards', values.shards, 2, 100_000);
  const o: FloorConfig = {
    shards,
    ratePerShard: rate,
    writers: 2,
    readers: 2,
    layout,
    perWakeup: int('per-wakeup', values['per-wakeup'], 1, Math.floor(shards / 2)),
    frameBytes: int('frame-bytes', values['frame-bytes'], 16, 64 * 1024),
    sqliteSynchronous: sync,
    variants: [...new Set(variants as FloorVariant[])].sort(),
    warmupMs: int('warmup-ms', values['warmup-ms'] ?? (quick ? '2000' : '3000'), 0, 60_000),
    measureMs: int('measure-ms', values['measure-ms'] ?? (quick ? '5000' : '20000'), 1000, 120_000),
  };
  return { o, quick };
}

async function run(args: string[]): Promise<void> {
  const { o, quick } = parse(args);
  const startedAt = new Date().toISOString();
  const loadAverageBefore = loadAverage();
  console.log(
    `${o.shards} shards × ${o.ratePerShard}/s over ${o.writers} writers (${o.layout}, ${o.perWakeup} per wake-up), ` +
      `relay to ${o.readers} readers, ${o.frameBytes} B frames, SQLite synchronous=${o.sqliteSynchronous}; ` +
      `warm-up ${o.warmupMs} ms, window ${o.measureMs} ms per variant. CPU from /proc (10 ms ticks). ` +
      `Load average ${loadAverageBefore}.\n`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'pp-floor-'));
  const children: Child[] = [];
  const fork = (role: string, config: object = {}) => {
    const c = forkChild('./floor-child.js', [role, JSON.stringify(config)]);
    children.push(c);
    return c;
  };
  const rows: FloorRow[] = [];
  /** The variants whose relay or readers fell behind, printed after the table. */
  const lagged: string[] = [];
  try {
    const relay = fork('relay');
    const { inPort, outPort } = await relay.next<{ inPort: number; outPort: number }>('ready');
    const readers = Array.from({ length: o.readers }, () =>
      fork('reader', { relayPort: outPort } satisfies FloorReaderConfig),
    );
    await Promise.all(readers.map((r) => r.next('ready')));
    const writers: Child[] = [];
    for (let w = 0; w < o.writers; w++) {
      const config: FloorWriterConfig = {
        writer: w,
        writers: o.writers,
        shards: o.shards,
        ratePerShard: o.ratePerShard,
        layout: o.layout,
        perWakeup: o.perWakeup,
        frameBytes: o.frameBytes,
        sqlitePath: join(dir, 'floor.db'),
        sqliteSynchronous: o.sqliteSynchronous,
        relayPort: inPort,
      };
      const child = fork('writer', config);
      // The first writer creates the file and its table before the other opens it.
      await child.next('ready');
      writers.push(child);
    }
    const { relay: r } = await counts(writers, relay, readers);
    if (r.readers !== o.readers) throw new Error(`relay has ${r.readers} of ${o.readers} readers`);
    console.log(FLOOR_TABLE_HEADER);
    for (const v of o.variants) {
      const vr = await runVariant(v, o, writers, relay, readers);
      rows.push(...vr);
      const behind = behindNote(vr, o.readers);
      if (behind !== undefined) lagged.push(`(${v}): ${behind}`);
    }
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
  for (const l of lagged) console.log(`\n${l}`);
  const loadAverageAfter = loadAverage();
  console.log(`\nload average after: ${loadAverageAfter}`);
  const result: FloorResult = {
    kind: 'floor',
    file: floorResultFile(o),
    startedAt,
    quick,
    loadAverageBefore,
    loadAverageAfter,
    host: hostInfo(),
    config: o,
    rows,
  };
  console.log(`results: ${await writeResult(result)}`);
}
