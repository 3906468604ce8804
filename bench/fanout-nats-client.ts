/**
 * The nats-server side of the comparisons (forked by `bench/fanout-nats.ts` and by
 * `bench/broker.ts --server nats`): the same IPC protocol and the same workload as
 * `broker-client.ts` (subscribe / reset / report / publish / cpu / exit, the publisher paced by
 * the same `pace.ts`; messages whose first 8 bytes are the send time, float64 ms since the
 * epoch; latency sampled on one message in 8, every message counted), over NATS core pub/sub
 * with a lean client of the NATS text protocol on raw TCP sockets. A lean client on both sides
 * keeps the comparison about the servers: the official client allocates a message object per
 * delivery, which would make the NATS side client-bound and flatter our ratio.
 *
 * Each shard is a subject (`s<uuid>`); each "connection" of the layout is one TCP connection
 * with one subscription per shard it follows.
 */
import { type Socket, connect as tcpConnect } from 'node:net';
import { performance } from 'node:perf_hooks';
import * as hdr from 'hdr-histogram-js';
import type { ClientRequest } from './broker-client.js';
import { latencyHistogram, serveClientRequests } from './client-requests.js';
import { pace } from './pace.js';

const nowMs = () => performance.timeOrigin + performance.now();
const sockets: Socket[] = [];
const histogram = latencyHistogram();
let received = 0;
let recording = false;
let disconnects = 0;
const SAMPLE_EVERY = 8;
let sampleCountdown = 0;

const CRLF = Buffer.from('\r\n');
const SPACE = 0x20;

/**
 * A NATS protocol reader: counts MSG deliveries (sampling latency from the payload), answers
 * PING, and calls `onPong` for PONG. Partial frames are kept across chunks.
 */
function createReader(socket: Socket, onPong: () => void): (chunk: Buffer) => void {
  let pending: Buffer | undefined;
  return (input) => {
    const at = nowMs();
    let buf = pending === undefined ? input : Buffer.concat([pending, input]);
    pending = undefined;
    let pos = 0;
    for (;;) {
      const eol = buf.indexOf(CRLF, pos);
      if (eol < 0) break;
      const c0 = buf[pos];
      if (c0 === 0x4d /* M */) {
        // MSG <subject> <sid> [reply-to] <#bytes>
        let sp = eol - 1;
        while (sp > pos && buf[sp] !== SPACE) sp--;
        let size = 0;
        for (let i = sp + 1; i < eol; i++) size = size * 10 + (buf[i]! - 0x30);
        const start = eol + 2;
        if (start + size + 2 > buf.length) break; // the payload is not all here yet
        if (recording) {
          received++;
          if (--sampleCountdown <= 0 && size >= 8) {
            sampleCountdown = SAMPLE_EVERY;
            const sent = buf.readDoubleLE(start);
            histogram.recordValue(Math.max(1, Math.round((at - sent) * 1000)));
          }
        }
        pos = start + size + 2;
        continue;
      }
      if (c0 === 0x50 /* P */) {
        if (buf[pos + 1] === 0x49 /* I */) socket.write('PONG\r\n');
        else onPong();
      } else if (c0 === 0x2d /* - */) {
        process.stderr.write(`nats: ${buf.toString('latin1', pos, eol)}\n`);
      }
      pos = eol + 2;
    }
    if (pos < buf.length) pending = Buffer.from(buf.subarray(pos));
    buf = Buffer.alloc(0);
  };
}

interface Conn {
  socket: Socket;
  /** Resolves on the next PONG. */
  ping(): Promise<void>;
}

function open(port: number, name: string): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: '127.0.0.1', port, noDelay: true });
    const pongs: (() => void)[] = [];
    socket.on('error', reject);
    socket.on('close', () => {
      disconnects++;
    });
    socket.on(
      'data',
      createReader(socket, () => pongs.shift()?.()),
    );
    const conn: Conn = {
      socket,
      ping: () =>
        new Promise<void>((r) => {
          pongs.push(r);
          socket.write('PING\r\n');
        }),
    };
    socket.once('connect', () => {
      socket.write(
        `CONNECT ${JSON.stringify({ verbose: false, pedantic: false, echo: false, name, lang: 'bench', version: '1', protocol: 1 })}\r\n`,
      );
      sockets.push(socket);
      conn.ping().then(() => resolve(conn), reject);
    });
  });
}

async function subscribe(port: number, connections: string[][]): Promise<void> {
  for (let i = 0; i < connections.length; i++) {
    const conn = await open(port, `bench-sub-${process.pid}-${i}`);
    const subs = connections[i]!.map((s, k) => `SUB ${s} ${k + 1}\r\n`).join('');
    conn.socket.write(subs);
    // The server has processed every SUB once it answers the PING after them.
    await conn.ping();
  }
}

/** One publisher connection per server port, kept open between runs (as a writer's would be). */
const publishers = new Map<number, Promise<Conn>>();

async function publish(r: Extract<ClientRequest, { type: 'publish' }>): Promise<number> {
  let opened = publishers.get(r.port);
  if (opened === undefined) {
    opened = open(r.port, `bench-pub-${process.pid}`);
    publishers.set(r.port, opened);
  }
  const conn = await opened;
  const heads = r.shards.map((s) => Buffer.from(`PUB ${s} ${r.diffBytes}\r\n`, 'latin1'));
  const payload = Buffer.alloc(r.diffBytes + 2);
  for (let i = 8; i < r.diffBytes; i++) payload[i] = i & 0xff;
  payload.write('\r\n', r.diffBytes, 'latin1');
  let next = 0;
  let waiting = false;
  const write = (count: number): void => {
    // The writes of one turn leave in one send, as node:http2 sends our publishers' frames: a
    // burst of `pace.ts` arrives at the server at once on both systems.
    if (conn.socket.writableCorked === 0) {
      conn.socket.cork();
      process.nextTick(() => conn.socket.uncork());
    }
    const parts: Buffer[] = [];
    for (let k = 0; k < count; k++) {
      const head = heads[next]!;
      next = (next + 1) % heads.length;
      payload.writeDoubleLE(nowMs(), 0);
      parts.push(head, Buffer.from(payload));
    }
    if (!conn.socket.write(Buffer.concat(parts))) {
      waiting = true;
      conn.socket.once('drain', () => {
        waiting = false;
      });
    }
  };
  const sent = await pace(r, write, () => waiting);
  // The server has processed every PUB once it answers the PING after them.
  await conn.ping();
  return sent;
}

serveClientRequests({
  subscribe: (m) => subscribe(m.port, m.connections),
  reset() {
    histogram.reset();
    received = 0;
    recording = true;
  },
  report: () => ({ received, disconnects, histogram: hdr.encodeIntoCompressedBase64(histogram) }),
  publish,
  close() {
    for (const s of sockets) s.destroy();
  },
});
