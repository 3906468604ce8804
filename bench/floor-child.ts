/**
 * The processes of `bench floor` (`bench/floor.ts`), forked with an IPC channel as
 * `floor-child.js <role> <config JSON>`; each answers `count` with its event counters and says
 * `ready` once connected.
 *
 * - `relay`: a bare `node:net` server. Writers connect to its `inPort`, readers to its `outPort`;
 *   every frame read from a writer is written to each reader connection, one `socket.write` per
 *   frame per reader (`createFrameRelay`): the least a broker process can do per delivery.
 * - `reader`: one `node:net` connection to the relay's `outPort`, reading into one reused buffer
 *   (`onread`) and counting frames: the least a reader process can do per update.
 * - `writer`: one `CommitSchedule` timer (`commit-schedule.ts`, as the e2e writers) over its
 *   shards. On `start` (`variant`, `t0`) each due event does (a) nothing but count, (b) one
 *   compare-and-set through `openSqliteConsensus` on the bench file, (c) (b) and then one write
 *   of a `frameBytes` frame to its relay connection; `stop` ends the schedule (replies
 *   `stopped` once the events in flight are over). It counts its timer wake-ups too.
 */
import { connect, createServer, type Socket } from 'node:net';
import { type Consensus, openSqliteConsensus } from '../src/consensus/index.js';
import { CommitSchedule } from './commit-schedule.js';
import { wallMs } from './e2e-model.js';
import { createFrameCounter, createFrameRelay, floorFrame } from './floor-frames.js';
import { type FloorLayout, writerPhasesMs, writerShards } from './floor-shape.js';

export type FloorVariant = 'a' | 'b' | 'c';

export interface FloorWriterConfig {
  writer: number;
  writers: number;
  shards: number;
  ratePerShard: number;
  layout: FloorLayout;
  perWakeup: number;
  frameBytes: number;
  sqlitePath: string;
  sqliteSynchronous: 'full' | 'normal';
  relayPort: number;
}

export interface FloorReaderConfig {
  relayPort: number;
}

const send = (m: Record<string, unknown>) => process.send?.(m);

function onRequest(handlers: Record<string, (m: Record<string, unknown>) => unknown>): void {
  process.on('message', async (m: Record<string, unknown> & { type: string }) => {
    if (m.type === 'exit') process.exit(0);
    const h = handlers[m.type];
    if (h === undefined) return;
    send({ type: m.type, ...((await h(m)) as Record<string, unknown> | undefined) });
  });
}

const listen = (server: ReturnType<typeof createServer>): Promise<number> =>
  new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve(typeof a === 'object' && a !== null ? a.port : 0);
    }),
  );

async function relay(): Promise<void> {
  const readers: Socket[] = [];
  const r = createFrameRelay(readers);
  const inbound = createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {});
    socket.on('data', r.inbound());
  });
  const outbound = createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {});
    readers.push(socket);
  });
  const [inPort, outPort] = await Promise.all([listen(inbound), listen(outbound)]);
  onRequest({
    count: () => ({ received: r.received, delivered: r.delivered, readers: readers.length }),
  });
  send({ type: 'ready', inPort, outPort });
}

async function reader(config: FloorReaderConfig): Promise<void> {
  const counter = createFrameCounter();
  const slab = Buffer.allocUnsafe(64 * 1024);
  await new Promise<void>((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port: config.relayPort,
      noDelay: true,
      onread: {
        buffer: slab,
        callback: (n) => {
          // The counter copies a split frame's tail, so the reused buffer is safe.
          counter.push(slab.subarray(0, n));
          return true;
        },
      },
    });
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  onRequest({ count: () => ({ frames: counter.frames }) });
  send({ type: 'ready' });
}

async function writer(config: FloorWriterConfig): Promise<void> {
  const consensus: Consensus = await openSqliteConsensus(config.sqlitePath, {
    synchronous: config.sqliteSynchronous,
  });
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: config.relayPort, noDelay: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
  const shards = writerShards(config);
  const keys = shards.map((g) => `s00000000-0000-0000-0000-${String(g).padStart(12, '0')}`);
  const seqnos: (bigint | null)[] = keys.map(() => null);
  const data = new Uint8Array(config.frameBytes).fill(120);
  const frame = floorFrame(config.frameBytes);
  const periodMs = 1000 / config.ratePerShard;
  const phasesMs = writerPhasesMs({ ...config, periodMs });
  let events = 0;
  let wakeups = 0;
  let schedule: CommitSchedule | undefined;

  const cas = async (i: number): Promise<void> => {
    const expected = seqnos[i] as bigint | null;
    const next = expected === null ? 1n : expected + 1n;
    const r = await consensus.compareAndSet(keys[i] as string, expected, { seqno: next, data });
    // No other writer owns the key; a mismatch would be a leftover file: take its head.
    seqnos[i] =
      r === 'committed' ? next : ((await consensus.head(keys[i] as string))?.seqno ?? null);
  };
  const commits: Record<FloorVariant, (i: number) => Promise<void>> = {
    a: async () => {
      events++;
    },
    b: async (i) => {
      await cas(i);
      events++;
    },
    c: async (i) => {
      await cas(i);
      socket.write(frame);
      events++;
    },
  };
  // The schedule arms one timer at a time, always with its own wake function.
  let wake: () => void = () => {};
  let timer: NodeJS.Timeout | undefined;
  const onTimer = () => {
    wakeups++;
    wake();
  };
  onRequest({
    start: (m) => {
      schedule = new CommitSchedule({
        phasesMs,
        periodMs,
        t0: m.t0 as number,
        nowMs: wallMs,
        setTimer: (fn, ms) => {
          wake = fn;
          timer = setTimeout(onTimer, ms);
        },
        setImmediate: (fn) => void setImmediate(fn),
        commit: commits[m.variant as FloorVariant],
      });
      schedule.start();
    },
    count: () => ({ events, wakeups }),
    stop: async () => {
      // No wake-up of this schedule after this (a stale one would start a second timer chain
      // in the next variant's schedule).
      clearTimeout(timer);
      await schedule?.stop();
      schedule = undefined;
    },
  });
  send({ type: 'ready' });
}

const [role, json] = process.argv.slice(2);
const config = JSON.parse(json ?? '{}') as FloorWriterConfig & FloorReaderConfig;
const started =
  role === 'relay'
    ? relay()
    : role === 'reader'
      ? reader(config)
      : role === 'writer'
        ? writer(config)
        : Promise.reject(new Error(`unknown role ${role}`));
started.catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
