/**
 * `npm run bench -- h2-client [--quick] [--rounds 4] [--seconds 3] [--message-bytes 560]`
 *
 * The client's HTTP/2 stack alone, per message at one message per wake-up: a bare `node:http2`
 * server in its own process (`bench/h2-client-server.ts`), and in this process either
 * - **node:http2**: a `ClientHttp2Stream` used as the gRPC transport used it ('data' events into
 *   the protocol's frame decoder, `stream.write` per push), or
 * - **own**: the client's own HTTP/2 session on `net` (`src/client/h2`, read with `onread`),
 *   as the gRPC transport uses it since node:http2 was replaced. (The go/no-go prototype's
 *   figures, with a plain 'data' listener too, are in bench/results/notes.md.)
 * Receive: the server writes one gRPC message per 1 ms timer; CPU µs per message received.
 * Send: one push per 1 ms timer; CPU µs per push, net of the same timers without pushes.
 * The two stacks alternate, round by round, so both see the same machine load.
 */

import { connect as h2Connect } from 'node:http2';
import { parseArgs } from 'node:util';
import { connectH2 } from '../src/client/h2/index.js';
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

type Open = (port: number, emit: boolean) => Promise<Client>;

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

/** The client's own HTTP/2 session (`src/client/h2`), as the gRPC transport uses it. */
const openOwn: Open = async (port, emit) => {
  let n = 0;
  let chunks = 0;
  const decoder = createFrameDecoder(4 << 20);
  const onFrame = (): void => {
    n++;
  };
  let up: () => void = () => {};
  let down: (err: Error | undefined) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    up = resolve;
    down = (err) => reject(err ?? new Error('closed'));
  });
  const session = connectH2(
    {
      host: '127.0.0.1',
      port,
      streamWindowBytes: 1 << 20,
      connectionWindowBytes: 4 << 20,
    },
    { onConnect: () => up(), onGoaway: () => {}, onClose: (err) => down(err) },
  );
  await ready;
  const stream = session.request(
    [
      [':method', 'POST'],
      [':scheme', 'http'],
      [':path', PATH],
      [':authority', `127.0.0.1:${port}`],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
      ...(emit ? [['x-bench-emit', '1'] as const] : []),
    ],
    {
      onHeaders: () => {},
      onData: (chunk) => {
        chunks++;
        decoder.push(chunk, onFrame);
      },
      onEnd: () => {},
      onReset: () => {},
    },
  );
  return {
    received: () => n,
    chunks: () => chunks,
    push: (frame) => stream.write(frame),
    close: () => session.destroy(),
  };
};

const STACKS: [string, Open][] = [
  ['node:http2', openNodeHttp2],
  ['own (src/client/h2)', openOwn],
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
    },
  });
  const stacks = STACKS;
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
      for (const [name, open] of order) {
        // Receive: one message per server timer.
        const rc = await open(port, true);
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
        const sc = await open(port, false);
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
