/**
 * `npm run bench -- h2-client [--quick] [--rounds 4] [--seconds 3] [--message-bytes 560]`
 *
 * The client's HTTP/2 stack alone, per message at one message per wake-up: a bare `node:http2`
 * server in its own process (`bench/h2-client-server.ts`), and in this process either
 * - **node:http2**: a `ClientHttp2Stream` used as the gRPC transport used it ('data' events into
 *   the protocol's frame decoder, `stream.write` per push), or
 * - **own framing**: a minimal HTTP/2 client on `net.Socket` (prototype of the go/no-go).
 * Receive: the server writes one gRPC message per 1 ms timer; CPU µs per message received.
 * Send: one push per 1 ms timer; CPU µs per push, net of the same timers without pushes.
 * The two stacks alternate, round by round, so both see the same machine load.
 */

import { connect as h2Connect } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { createFrameDecoder } from '../src/protocol/index.js';
import { forkChild, loadAverage, sleep } from './e2e-child.js';

export const h2ClientBench = {
  description: 'client HTTP/2 stack: CPU µs per message received / pushed, node:http2 vs own',
  run,
};

interface Client {
  /** Messages received so far. */
  received(): number;
  /** 'data' chunks received so far (about one per wake-up). */
  chunks(): number;
  push(frame: Buffer): void;
  close(): void;
}

interface Variant {
  /** > 0: after the first DATA frame, only count bytes (DATA frames of this size). */
  floorBytes: number;
  /** Read with `net`'s `onread` (one reused buffer, no Readable stream) instead of 'data'. */
  onread: boolean;
}

type Open = (port: number, emit: boolean, variant: Variant) => Promise<Client>;

const PATH = '/mz_persist_client.internal.service.ProtoPersistPubSub/PubSub';

const openNodeHttp2: Open = async (port, emit) => {
  const session = h2Connect(`http://127.0.0.1:${port}`, {
    settings: { enablePush: false, initialWindowSize: 1 << 20 },
  });
  await new Promise<void>((r, j) => {
    session.once('remoteSettings', () => r());
    session.once('error', j);
  });
  session.setLocalWindowSize(4 << 20);
  const stream = session.request(
    {
      ':method': 'POST',
      ':path': PATH,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...(emit ? { 'x-bench-emit': '1' } : {}),
    },
    { endStream: false },
  );
  let n = 0;
  let chunks = 0;
  const decoder = createFrameDecoder(4 << 20);
  const onFrame = (): void => {
    n++;
  };
  stream.on('data', (chunk: Buffer) => {
    chunks++;
    decoder.push(chunk, onFrame);
  });
  stream.on('error', () => {});
  return {
    received: () => n,
    chunks: () => chunks,
    push: (frame) => stream.write(frame),
    close: () => session.destroy(),
  };
};

// --- prototype of a minimal HTTP/2 client on net.Socket ---------------------------------------

function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const b = Buffer.allocUnsafe(9);
  b.writeUIntBE(length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(streamId, 5);
  return b;
}
function hpackInt(out: number[], prefixBits: number, first: number, v: number): void {
  const max = (1 << prefixBits) - 1;
  if (v < max) {
    out.push(first | v);
    return;
  }
  out.push(first | max);
  let r = v - max;
  while (r >= 128) {
    out.push((r & 127) | 128);
    r >>>= 7;
  }
  out.push(r);
}
function hpackLiteral(headers: Record<string, string>): Buffer {
  const out: number[] = [];
  for (const [k, v] of Object.entries(headers)) {
    out.push(0);
    hpackInt(out, 7, 0, k.length);
    for (const c of Buffer.from(k)) out.push(c);
    hpackInt(out, 7, 0, v.length);
    for (const c of Buffer.from(v)) out.push(c);
  }
  return Buffer.from(out);
}

const openOwn: Open = async (port, emit, { floorBytes, onread }) => {
  let onChunk: (chunk: Buffer) => void = () => {};
  const socket: Socket = netConnect({
    port,
    host: '127.0.0.1',
    ...(onread
      ? {
          onread: {
            buffer: Buffer.allocUnsafe(256 * 1024),
            callback: (nread: number, buf: Uint8Array) => {
              onChunk(Buffer.from(buf.buffer, buf.byteOffset, nread));
              return true;
            },
          },
        }
      : {}),
  });
  socket.setNoDelay(true);
  await new Promise<void>((r, j) => {
    socket.once('connect', () => r());
    socket.once('error', j);
  });
  const settings = Buffer.alloc(12);
  settings.writeUInt16BE(2, 0); // ENABLE_PUSH 0
  settings.writeUInt16BE(4, 6); // INITIAL_WINDOW_SIZE
  settings.writeUInt32BE(1 << 20, 8);
  const wu = (id: number, inc: number): Buffer => {
    const b = Buffer.allocUnsafe(13);
    frameHeader(4, 8, 0, id).copy(b);
    b.writeUInt32BE(inc, 9);
    return b;
  };
  const block = hpackLiteral({
    ':method': 'POST',
    ':scheme': 'http',
    ':path': PATH,
    ':authority': `127.0.0.1:${port}`,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...(emit ? { 'x-bench-emit': '1' } : {}),
  });
  socket.write(
    Buffer.concat([
      Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
      frameHeader(12, 4, 0, 0),
      settings,
      wu(0, (4 << 20) - 65535),
      frameHeader(block.length, 1, 4, 1),
      block,
    ]),
  );
  let n = 0;
  let chunks = 0;
  let sendWindow = 65535; // connection and stream, tracked together for the prototype
  let streamSendWindow = 65535;
  let consumedConn = 0;
  let consumedStream = 0;
  const decoder = createFrameDecoder(4 << 20);
  const onFrame = (): void => {
    n++;
  };
  let pending: Buffer | undefined;
  const onFrameH2 = (type: number, flags: number, id: number, p: Buffer): void => {
    if (type === 0) {
      let body = p;
      if (flags & 8) body = p.subarray(1, p.length - p[0]!);
      decoder.push(body, onFrame);
      consumedConn += p.length;
      consumedStream += p.length;
      if (consumedConn >= 1 << 20) {
        socket.write(wu(0, consumedConn));
        consumedConn = 0;
      }
      if (consumedStream >= 1 << 19) {
        socket.write(wu(id, consumedStream));
        consumedStream = 0;
      }
    } else if (type === 4 && (flags & 1) === 0) {
      for (let i = 0; i + 6 <= p.length; i += 6) {
        if (p.readUInt16BE(i) === 4) streamSendWindow = p.readUInt32BE(i + 2);
      }
      socket.write(frameHeader(0, 4, 1, 0));
    } else if (type === 6 && (flags & 1) === 0) {
      socket.write(Buffer.concat([frameHeader(8, 6, 1, 0), p]));
    } else if (type === 8) {
      if (id === 0) sendWindow += p.readUInt32BE(0) & 0x7fffffff;
      else streamSendWindow += p.readUInt32BE(0) & 0x7fffffff;
    }
  };
  let floorReceived = 0;
  const floor = (chunk: Buffer): void => {
    chunks++;
    floorReceived += chunk.length;
  };
  const parse = (chunk: Buffer): void => {
    chunks++;
    if (floorBytes > 0 && n > 0) {
      // Open the windows wide: the floor sends no more WINDOW_UPDATEs.
      socket.write(Buffer.concat([wu(0, 1 << 30), wu(1, 1 << 30)]));
      onChunk = floor;
    }
    let buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
    let pos = 0;
    while (buf.length - pos >= 9) {
      const len = buf.readUIntBE(pos, 3);
      if (buf.length - pos < 9 + len) break;
      const type = buf[pos + 3]!;
      const flags = buf[pos + 4]!;
      const id = buf.readUInt32BE(pos + 5) & 0x7fffffff;
      onFrameH2(type, flags, id, buf.subarray(pos + 9, pos + 9 + len));
      pos += 9 + len;
    }
    pending = pos < buf.length ? Buffer.from(buf.subarray(pos)) : undefined;
    buf = chunk;
  };
  onChunk = parse;
  if (!onread) socket.on('data', (chunk: Buffer) => onChunk(chunk));
  socket.on('error', () => {});
  return {
    received: () => n + Math.floor(floorReceived / (floorBytes + 9)),
    chunks: () => chunks,
    push(frame) {
      if (frame.length > sendWindow || frame.length > streamSendWindow) return; // prototype
      sendWindow -= frame.length;
      streamSendWindow -= frame.length;
      const b = Buffer.allocUnsafe(9 + frame.length);
      b.writeUIntBE(frame.length, 0, 3);
      b[3] = 0;
      b[4] = 0;
      b.writeUInt32BE(1, 5);
      frame.copy(b, 9);
      socket.write(b);
    },
    close: () => socket.destroy(),
  };
};

const STACKS: [string, Open, Variant][] = [
  ['node:http2', openNodeHttp2, { floorBytes: 0, onread: false }],
  ['own framing', openOwn, { floorBytes: 0, onread: false }],
  ['own framing, onread', openOwn, { floorBytes: 0, onread: true }],
  ['floor: bytes counted', openOwn, { floorBytes: 1, onread: false }],
];

const cpuUs = (): number => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const systemUs = (): number => process.cpuUsage().system;

async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      'message-bytes': { type: 'string', default: '560' },
      floor: { type: 'boolean', default: false },
    },
  });
  // The floor (own framing that stops parsing: bytes counted) only with --floor.
  const stacks = STACKS.filter(([, , v]) => values.floor || v.floorBytes === 0);
  const rounds = Number(values.rounds ?? (values.quick ? 2 : 4));
  const seconds = Number(values.seconds ?? (values.quick ? 1.5 : 3));
  const size = Number(values['message-bytes']);
  for (const [name, v] of [
    ['rounds', rounds],
    ['seconds', seconds],
    ['message-bytes', size],
  ] as const) {
    if (!(v > 0)) throw new Error(`--${name} must be > 0`);
  }
  const frame = Buffer.alloc(5 + size, 7);
  frame[0] = 0;
  frame.writeUInt32BE(size, 1);
  const server = forkChild('./h2-client-server.js', ['--message-bytes', String(size)]);
  const { port } = await server.next<{ port: number }>('ready');
  const ms = seconds * 1000;
  const rows: string[] = [];
  const totals = new Map<string, { recv: number[]; send: number[] }>();
  console.log(`messages ${size} B; server in its own process; load average: ${loadAverage()}\n`);
  console.log(
    '| round | stack | msgs received | chunks | receive CPU µs/msg | of it system | send CPU µs/push | load |',
  );
  console.log('|---|---|---:|---:|---:|---:|---:|---|');
  try {
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? stacks : [...stacks].reverse();
      for (const [name, open, variant] of order) {
        // Receive: one message per server timer.
        const rc = await open(port, true, {
          ...variant,
          floorBytes: variant.floorBytes > 0 ? frame.length : 0,
        });
        await sleep(300);
        const n0 = rc.received();
        const k0 = rc.chunks();
        const c0 = cpuUs();
        const s0 = systemUs();
        await sleep(ms);
        const recvUs = (cpuUs() - c0) / (rc.received() - n0);
        const recvSysUs = (systemUs() - s0) / (rc.received() - n0);
        const msgs = rc.received() - n0;
        const chunks = rc.chunks() - k0;
        rc.close();
        // Send: one push per 1 ms timer, net of the bare timers.
        const sc = await open(port, false, { ...variant, floorBytes: 0 });
        const ticks = Math.round(ms);
        const loop = async (push: boolean): Promise<number> => {
          const t0 = cpuUs();
          for (let i = 0; i < ticks; i++) {
            await sleep(1);
            if (push) sc.push(frame);
          }
          return cpuUs() - t0;
        };
        await loop(true); // warm-up
        const base = await loop(false);
        const withPush = await loop(true);
        const sendUs = (withPush - base) / ticks;
        sc.close();
        const t = totals.get(name) ?? { recv: [], send: [] };
        t.recv.push(recvUs);
        t.send.push(sendUs);
        totals.set(name, t);
        rows.push(
          `| ${r + 1} | ${name} | ${msgs} | ${chunks} | ${recvUs.toFixed(1)} | ${recvSysUs.toFixed(1)} | ${sendUs.toFixed(1)} | ${loadAverage()} |`,
        );
        console.log(rows[rows.length - 1]);
      }
    }
  } finally {
    await server.stop();
  }
  console.log(
    '\n| stack | receive µs/msg (median) | send µs/push (median) | receive ratio | send ratio |',
  );
  console.log('|---|---:|---:|---:|---:|');
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  const ref = totals.get(stacks[0]![0])!;
  // Paired within each round (same minutes of machine load), the ratio to the first stack.
  const ratio = (xs: number[], base: number[]): string =>
    median(xs.map((x, i) => x / base[i]!)).toFixed(2);
  for (const [name, t] of totals) {
    console.log(
      `| ${name} | ${median(t.recv).toFixed(1)} | ${median(t.send).toFixed(1)} | ` +
        `${ratio(t.recv, ref.recv)} | ${ratio(t.send, ref.send)} |`,
    );
  }
  console.log(`\nload average after: ${loadAverage()}`);
}
