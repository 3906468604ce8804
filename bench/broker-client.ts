/**
 * Lean benchmark clients of the broker, as child processes (forked by `bench/broker.ts`): raw
 * `node:http2` with our own gRPC framing, so that the client is not the bottleneck.
 *
 * - `subscribe`: opens sessions, one PubSub stream per connection, subscribes each to its
 *   shards, and counts received diffs; each diff carries its send time (float64 ms since the
 *   epoch at offset 0), so fan-out latency (publisher write → subscriber read) goes into an HDR
 *   histogram in µs, sampled on one message in 8 (every message is counted). A subscriber also
 *   keeps its own worst stall since `reset` (`tick-stalls.ts`, 1 ms ticks; unless the request
 *   says `trackStalls: false`), in each `report`: a latency tail is then told apart as the
 *   broker's or the bench subscriber's own.
 * - `publish`: pushes 256 B diffs round-robin over shards at a paced rate for a duration
 *   (`pace.ts`: per 1 ms tick, evenly spread one per write, or in bursts), on the publisher's
 *   one session and stream, opened by its first `publish` and kept for the next.
 * - `cpu`: this process's `process.cpuUsage()`.
 */
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  type SecureClientSessionOptions,
} from 'node:http2';
import { connect as netConnect } from 'node:net';
import { performance } from 'node:perf_hooks';
import * as hdr from 'hdr-histogram-js';
import {
  CALLER_ID_HEADER,
  decodeMessage,
  encodePush,
  encodeSubscribe,
  GRPC_CONTENT_TYPE,
  PUBSUB_METHOD_PATH,
} from '../src/protocol/index.js';
import { createWriteWindow, systemClock } from '../src/util/index.js';
import { latencyHistogram, serveClientRequests } from './client-requests.js';
import { pace } from './pace.js';
import { type RunningTickStalls, startTickStalls } from './tick-stalls.js';

export type ClientRequest =
  | {
      type: 'subscribe';
      port: number;
      connections: string[][];
      connectionsPerSession: number;
      /** Keep the subscriber's own worst stall (a 1 ms timer); default true. */
      trackStalls?: boolean;
    }
  | { type: 'reset' }
  | { type: 'report' }
  | {
      type: 'publish';
      port: number;
      shards: string[];
      pushesPerSecond: number;
      durationMs: number;
      diffBytes: number;
      /**
       * One push per write at evenly spaced times (like e2e writers' commits), instead of
       * everything due per 1 ms tick in one write.
       */
      spread?: boolean;
      /**
       * With `spread`: every push due within one slot of this many ms written at the slot's
       * start, in one wake-up, still one write each (`bench/pace.ts`). @default 0
       */
      burstMs?: number;
      /**
       * With `spread`: the SDK sender's write window, in µs (`src/util/write-window.ts`, as
       * `persist_pubsub_client_write_window_us`): a push within it of the last write waits
       * for its end and shares one write. @default 0
       */
      writeWindowUs?: number;
    }
  | { type: 'cpu' }
  | { type: 'exit' };

const nowMs = () => performance.timeOrigin + performance.now();
const sessions: ClientHttp2Session[] = [];
const histogram = latencyHistogram();
let received = 0;
let recording = false;
/** The subscriber's own stalls (started by its first subscribe: publishers have none). */
let stalls: RunningTickStalls | undefined;

const BENCH_TOKEN = process.env.PERSIST_PUBSUB_BENCH_TOKEN;
/** `bench broker --socket unix`: the broker's Unix socket (else loopback TCP on `port`). */
const BENCH_SOCKET = process.env.PERSIST_PUBSUB_BENCH_SOCKET;

/** An HTTP/2 session to the broker: TCP on `port`, or the run's Unix socket. */
function dial(port: number, options: SecureClientSessionOptions = {}): ClientHttp2Session {
  if (BENCH_SOCKET === undefined) return connect(`http://127.0.0.1:${port}`, options);
  const path = BENCH_SOCKET;
  return connect('http://localhost', { ...options, createConnection: () => netConnect(path) });
}

function openStream(session: ClientHttp2Session, callerId: string): ClientHttp2Stream {
  const stream = session.request({
    ':method': 'POST',
    ':path': PUBSUB_METHOD_PATH,
    'content-type': GRPC_CONTENT_TYPE,
    te: 'trailers',
    [CALLER_ID_HEADER]: callerId,
    // `bench broker --tokens`: the broker's scoped token (every client presents the same one).
    ...(BENCH_TOKEN === undefined ? {} : { authorization: `Bearer ${BENCH_TOKEN}` }),
  });
  stream.on('error', () => {});
  return stream;
}

function subscribeFrame(shardId: string): Buffer {
  return encodeSubscribe(shardId, undefined, undefined, true);
}

/** Latency is sampled on one message in this many (every message is counted). */
const SAMPLE_EVERY = 8;
let sampleCountdown = 0;

/** Parses one forwarded message fully and records its latency. */
function sample(message: Buffer, at: number): void {
  const push = decodeMessage(message);
  if (push.kind !== 'push') return;
  const d = push.diff;
  if (d.length < 8) return;
  const sent = Buffer.from(d.buffer, d.byteOffset, 8).readDoubleLE(0);
  histogram.recordValue(Math.max(1, Math.round((at - sent) * 1000)));
}

/**
 * A lean reader: walks the 5-byte gRPC prefixes across chunks, counting messages, and fully
 * parses only sampled ones (when whole in the chunk), so that one subscriber process can keep
 * up with a broker doing hundreds of thousands of deliveries per second.
 */
function createLeanReader(): (chunk: Buffer) => void {
  let skip = 0; // body bytes of the current message still to skip
  let head: Buffer | undefined; // a prefix split across chunks
  return (chunk) => {
    const at = nowMs();
    let pos = 0;
    const len = chunk.length;
    if (skip > 0) {
      const n = Math.min(skip, len);
      skip -= n;
      pos = n;
    }
    while (pos < len) {
      if (head !== undefined) {
        const need = 5 - head.length;
        const take = chunk.subarray(pos, pos + need);
        head = Buffer.concat([head, take]);
        pos += take.length;
        if (head.length < 5) return;
        skip = head.readUInt32BE(1);
        head = undefined;
        if (recording) received++;
        const n = Math.min(skip, len - pos);
        skip -= n;
        pos += n;
        continue;
      }
      if (len - pos < 5) {
        head = Buffer.from(chunk.subarray(pos));
        return;
      }
      const bodyLen = chunk.readUInt32BE(pos + 1);
      const start = pos + 5;
      if (recording) {
        received++;
        if (--sampleCountdown <= 0 && start + bodyLen <= len) {
          sampleCountdown = SAMPLE_EVERY;
          sample(chunk.subarray(start, start + bodyLen), at);
        }
      }
      if (start + bodyLen <= len) {
        pos = start + bodyLen;
      } else {
        skip = start + bodyLen - len;
        pos = len;
      }
    }
  };
}

async function subscribe(port: number, connections: string[][], perSession: number): Promise<void> {
  let session: ClientHttp2Session | undefined;
  for (let i = 0; i < connections.length; i++) {
    if (i % perSession === 0) {
      session = dial(port, { settings: { initialWindowSize: 1 << 20 } });
      session.on('error', () => {});
      // The connection-level window too (HTTP/2 default 64 KiB), as gRPC clients do (BDP probing).
      const s = session;
      s.once('connect', () => s.setLocalWindowSize(16 << 20));
      sessions.push(session);
    }
    const stream = openStream(session!, `bench-sub-${process.pid}-${i}`);
    stream.on('data', createLeanReader());
    stream.write(Buffer.concat(connections[i]!.map(subscribeFrame)));
    if (i % 50 === 49) await new Promise((r) => setImmediate(r));
  }
}

/** The publisher's one session and PubSub stream, kept from one `publish` to the next. */
let publisher: { port: number; stream: ClientHttp2Stream } | undefined;

/**
 * The publisher's stream to the broker on `port`: one session and one stream per publisher
 * process, as an SDK writer holds, used again by every `publish` (a new one only for another
 * port or once the old one is gone), so that the broker does not see a connection more per step.
 */
function publishStream(port: number): ClientHttp2Stream {
  const p = publisher;
  if (p !== undefined && p.port === port && !p.stream.destroyed && !p.stream.closed) {
    return p.stream;
  }
  const session = dial(port);
  session.on('error', () => {});
  sessions.push(session);
  const stream = openStream(session, `bench-pub-${process.pid}`);
  publisher = { port, stream };
  return stream;
}

async function publish(r: Extract<ClientRequest, { type: 'publish' }>): Promise<number> {
  const stream = publishStream(r.port);
  const ids = r.shards;
  const seqnos = r.shards.map(() => 0n);
  const diff = Buffer.alloc(r.diffBytes);
  for (let i = 8; i < diff.length; i++) diff[i] = i & 0xff;
  let next = 0;
  let waiting = false;
  // With a write window, frames wait here for the window's end (as in the SDK's sender).
  let held: Buffer[] = [];
  let soon: NodeJS.Immediate | undefined;
  const writeHeld = (): void => {
    if (soon !== undefined) clearImmediate(soon);
    soon = undefined;
    if (held.length === 0) return;
    stream.write(held.length === 1 ? held[0]! : Buffer.concat(held));
    held = [];
    window.wrote();
  };
  const window = createWriteWindow({
    windowUs: r.writeWindowUs ?? 0,
    clock: systemClock,
    soon: () => {
      soon ??= setImmediate(writeHeld);
    },
    flush: writeHeld,
  });
  const write = (count: number): void => {
    const frames: Buffer[] = [];
    for (let k = 0; k < count; k++) {
      const i = next;
      next = (next + 1) % ids.length;
      seqnos[i]! += 1n;
      diff.writeDoubleLE(nowMs(), 0);
      frames.push(encodePush(ids[i]!, seqnos[i]!, diff, undefined, undefined, true));
    }
    if ((r.writeWindowUs ?? 0) > 0) {
      held.push(...frames);
      window.request();
    } else if (!stream.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames))) {
      waiting = true;
      stream.once('drain', () => {
        waiting = false;
      });
    }
  };
  return pace(r, write, () => waiting);
}

serveClientRequests({
  async subscribe(m) {
    if (m.trackStalls !== false) stalls ??= startTickStalls(1);
    await subscribe(m.port, m.connections, m.connectionsPerSession);
  },
  reset() {
    histogram.reset();
    received = 0;
    recording = true;
    stalls?.reset();
  },
  report: () => ({
    received,
    histogram: hdr.encodeIntoCompressedBase64(histogram),
    stall: stalls?.read(),
  }),
  publish,
  close() {
    for (const s of sessions) s.destroy();
  },
});
