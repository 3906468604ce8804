/**
 * Bad input against a real broker (gRPC over loopback, raw HTTP/2 so nothing is sanitized by a
 * client library): random and mutated frames in each class of the issue. For every case the
 * broker stays up, the call ends with a clear gRPC status, the class's metric moves by exactly
 * the number of cases, and a healthy pair of clients keeps working afterwards.
 * Cases are generated from a seed (`FUZZ_SEED`, printed).
 */
import { randomUUID } from 'node:crypto';
import { connect as http2Connect } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../../src/broker/index.js';
import { createRng } from '../support/fault-rng.js';
import { openClient, openRaw, type RawEnd, until } from '../support/grpc-clients.js';

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const MAX_SHARD_ID_BYTES = 256;
const shard = () => `s${randomUUID()}`;
let broker: Broker;
let address: string;
let casesRun = 0;

beforeAll(async () => {
  console.log(`[fuzz] FUZZ_SEED=${SEED}`);
  broker = createBroker({ listen: { host: '127.0.0.1', port: 0 } });
  await broker.start();
  address = `127.0.0.1:${broker.address.port}`;
});

afterAll(async () => {
  console.log(`[fuzz] broker frame cases run: ${casesRun}`);
  await broker.close({ deadlineMs: 100 });
});

/** The value of a counter (summed over series matching `labels`). */
async function counter(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await broker.registry.metrics();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

const varint = (n: bigint): number[] => {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
};
const ld = (field: number, body: Uint8Array | number[]): number[] => [
  ...varint(BigInt((field << 3) | 2)),
  ...varint(BigInt(body.length)),
  ...body,
];
/** A ProtoPubSubMessage with oneof `variant` (2 push, 3 subscribe, 4 unsubscribe). */
const message = (variant: number, shardId: Uint8Array | number[], extra: number[] = []) =>
  Uint8Array.from(ld(variant, [...ld(1, shardId), ...extra]));

/** Sends each body as one call on a shared session (in batches), resolving the call ends. */
async function runCases(
  bodies: ((call: ReturnType<typeof openRaw>) => void)[],
  timeoutMs = 20_000,
): Promise<RawEnd[]> {
  const session = http2Connect(`http://${address}`);
  session.on('error', () => {});
  const ends: RawEnd[] = [];
  try {
    for (let i = 0; i < bodies.length; i += 50) {
      const batch = bodies.slice(i, i + 50).map((send) => {
        const call = openRaw(address, { session });
        send(call);
        return call;
      });
      for (const call of batch) {
        const end = await Promise.race([
          call.ended,
          new Promise<never>((_, rej) =>
            setTimeout(() => rej(new Error('a call did not end')), timeoutMs).unref(),
          ),
        ]);
        ends.push(end);
        call.close();
      }
    }
  } finally {
    session.close();
  }
  casesRun += bodies.length;
  return ends;
}

/** A healthy pair still works (through grpc-js): one bad peer did not disturb others. */
async function healthyPair(): Promise<void> {
  const a = await openClient('grpc-js', address);
  const b = await openClient('grpc-js', address);
  try {
    const s = shard();
    a.subscribe(s);
    await until(() => broker.listShards({ pageSize: 1000 }).items.some((x) => x.shardId === s));
    b.push(s, 1n, Uint8Array.of(9));
    await a.waitFor(1, 10_000);
  } finally {
    a.close();
    b.close();
  }
  expect(broker.state).toBe('serving');
}

/** Bytes that are not valid UTF-8 (at least one bad sequence), 1..`max` long. */
function invalidUtf8(rng: ReturnType<typeof createRng>, max: number): Uint8Array {
  const len = rng.int(1, max);
  const b = Uint8Array.from({ length: len }, () => rng.int(0x20, 0x7e));
  const bad = [[0xff], [0xc0, 0xaf], [0x80], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80]];
  const seq = rng.pick(bad);
  const at = rng.int(0, Math.max(0, len - seq.length));
  b.set(seq.slice(0, len - at), at);
  return b;
}

describe('broker: random and mutated frames', () => {
  it('invalid UTF-8 shard ids → INVALID_ARGUMENT, shard_id_charset counted per case', async () => {
    const rng = createRng(SEED).fork('utf8');
    const n = 150;
    const before = await counter('persist_pubsub_server_rejections_total', {
      limit: 'shard_id_charset',
    });
    const ends = await runCases(
      Array.from({ length: n }, () => {
        const body = message(rng.pick([2, 3, 4]), invalidUtf8(rng, 64), [0x10, 0x01]);
        return (c) => {
          c.sendMessage(body);
          c.stream.end();
        };
      }),
    );
    expect(ends.map((e) => e.grpcStatus)).toEqual(Array(n).fill('3'));
    const after = await counter('persist_pubsub_server_rejections_total', {
      limit: 'shard_id_charset',
    });
    expect(after - before).toBe(n);
    await healthyPair();
  });

  it('over-long shard ids → INVALID_ARGUMENT, shard_id_length counted per case', async () => {
    const rng = createRng(SEED).fork('long');
    const n = 60;
    const before = await counter('persist_pubsub_server_rejections_total', {
      limit: 'shard_id_length',
    });
    const ends = await runCases(
      Array.from({ length: n }, () => {
        const len = rng.pick([MAX_SHARD_ID_BYTES + 1, rng.int(257, 5000), rng.int(5000, 60_000)]);
        const id = new Uint8Array(len).fill(0x61);
        const body = message(rng.pick([2, 3, 4]), id);
        return (c) => {
          c.sendMessage(body);
          c.stream.end();
        };
      }),
    );
    expect(ends.map((e) => e.grpcStatus)).toEqual(Array(n).fill('3'));
    const after = await counter('persist_pubsub_server_rejections_total', {
      limit: 'shard_id_length',
    });
    expect(after - before).toBe(n);
    await healthyPair();
  });

  it('huge varints (seqno, tags, lengths) → INVALID_ARGUMENT with a parse-error code', async () => {
    const rng = createRng(SEED).fork('varint');
    const n = 90;
    const before = await counter('persist_pubsub_server_parse_errors_total');
    const byCode = async () => ({
      bad_varint: await counter('persist_pubsub_server_parse_errors_total', { code: 'bad_varint' }),
      length_overflow: await counter('persist_pubsub_server_parse_errors_total', {
        code: 'length_overflow',
      }),
    });
    const codesBefore = await byCode();
    const bodies: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const kind = i % 3;
      const long = Array(rng.int(11, 20)).fill(0xff).concat([0x01]);
      if (kind === 0) {
        // A seqno varint longer than 10 bytes.
        bodies.push(message(2, Buffer.from(shard()), [0x10, ...long]));
      } else if (kind === 1) {
        // A length prefix over 32 bits.
        bodies.push(Uint8Array.from([0x1a, ...varint(2n ** BigInt(rng.int(33, 63))), 0x0a]));
      } else {
        // A tag varint that never ends.
        bodies.push(Uint8Array.from(long));
      }
    }
    const ends = await runCases(
      bodies.map((b) => (c) => {
        c.sendMessage(b);
        c.stream.end();
      }),
    );
    expect(ends.map((e) => e.grpcStatus)).toEqual(Array(n).fill('3'));
    const after = await counter('persist_pubsub_server_parse_errors_total');
    expect(after - before).toBe(n);
    // Every case counted under its stable code: two thirds over-long varints, one third lengths.
    const codesAfter = await byCode();
    expect(codesAfter.bad_varint - codesBefore.bad_varint).toBe((2 * n) / 3);
    expect(codesAfter.length_overflow - codesBefore.length_overflow).toBe(n / 3);
    await healthyPair();
  });

  it('unknown fields and unknown oneof variants are skipped; the known part applies', async () => {
    const rng = createRng(SEED).fork('unknown');
    const n = 80;
    const ids: string[] = [];
    const bodies: Uint8Array[] = [];
    const unknownField = (): number[] => {
      // Fields 1-6 are the schema's (6: the refusal notice extension).
      const field = rng.int(7, 4000);
      switch (rng.pick([0, 1, 2, 5])) {
        case 0:
          return [...varint(BigInt(field << 3)), ...varint(BigInt(rng.int(0, 2 ** 30)))];
        case 1:
          return [...varint(BigInt((field << 3) | 1)), 1, 2, 3, 4, 5, 6, 7, 8];
        case 5:
          return [...varint(BigInt((field << 3) | 5)), 1, 2, 3, 4];
        default:
          return ld(
            field,
            Array.from({ length: rng.int(0, 40) }, () => rng.int(0, 255)),
          );
      }
    };
    for (let i = 0; i < n; i++) {
      const id = shard();
      ids.push(id);
      const inner = [...unknownField(), ...ld(1, Buffer.from(id)), ...unknownField()];
      bodies.push(Uint8Array.from([...unknownField(), ...ld(3, inner), ...unknownField()]));
    }
    // And messages that carry only an unknown oneof variant (a newer peer's message kind).
    for (let i = 0; i < 20; i++)
      bodies.push(Uint8Array.from(ld(rng.int(7, 15), [0x0a, 0x01, 0x61])));
    const before = await counter('persist_pubsub_server_caller_calls_total', { call: 'subscribe' });
    const session = http2Connect(`http://${address}`);
    session.on('error', () => {});
    const call = openRaw(address, { session });
    for (const b of bodies) call.sendMessage(b);
    await until(
      () => {
        const live = new Set(broker.listShards({ pageSize: 10_000 }).items.map((x) => x.shardId));
        return ids.every((id) => live.has(id));
      },
      20_000,
      'every subscription despite unknown fields',
    );
    call.stream.end();
    expect((await call.ended).grpcStatus).toBe('0');
    call.close();
    session.close();
    casesRun += bodies.length;
    const after = await counter('persist_pubsub_server_caller_calls_total', { call: 'subscribe' });
    expect(after - before).toBe(n);
    await healthyPair();
  });

  it('truncated frames and truncated messages end the call with a clear status', async () => {
    const rng = createRng(SEED).fork('truncated');
    const n = 60;
    const beforeParse = await counter('persist_pubsub_server_parse_errors_total', {
      code: 'truncated',
    });
    const beforeFrames = await counter('persist_pubsub_server_parse_errors_total', {
      code: 'truncated_frame',
    });
    const bodies: ((c: ReturnType<typeof openRaw>) => void)[] = [];
    for (let i = 0; i < n; i++) {
      const full = message(2, Buffer.from(shard()), [0x10, 0x05, ...ld(3, [1, 2, 3, 4])]);
      const cut = rng.int(1, full.length - 1);
      if (i % 2 === 0) {
        // The protobuf message is cut short inside a correct gRPC frame.
        bodies.push((c) => {
          c.sendMessage(full.subarray(0, cut));
          c.stream.end();
        });
      } else {
        // The gRPC frame header promises more bytes than the stream carries.
        bodies.push((c) => {
          const head = Buffer.alloc(5);
          head.writeUInt32BE(full.length, 1);
          c.stream.end(Buffer.concat([head, Buffer.from(full.subarray(0, cut))]));
        });
      }
    }
    const ends = await runCases(bodies);
    const statuses = ends.map((e) => e.grpcStatus);
    // Inner truncation: INVALID_ARGUMENT; a frame cut by the end of the stream: INTERNAL.
    expect(statuses.filter((_, i) => i % 2 === 0)).toEqual(Array(n / 2).fill('3'));
    expect(statuses.filter((_, i) => i % 2 === 1)).toEqual(Array(n / 2).fill('13'));
    expect(ends.filter((_, i) => i % 2 === 1).every((e) => (e.grpcMessage ?? '').length > 0)).toBe(
      true,
    );
    const afterParse = await counter('persist_pubsub_server_parse_errors_total', {
      code: 'truncated',
    });
    expect(afterParse - beforeParse).toBe(n / 2);
    const afterFrames = await counter('persist_pubsub_server_parse_errors_total', {
      code: 'truncated_frame',
    });
    expect(afterFrames - beforeFrames).toBe(n / 2);
    await healthyPair();
  });

  it('enormous gRPC length prefixes → RESOURCE_EXHAUSTED, message_size counted per case', async () => {
    const rng = createRng(SEED).fork('prefix');
    const n = 40;
    const before = await counter('persist_pubsub_server_rejections_total', {
      limit: 'message_size',
    });
    const ends = await runCases(
      Array.from({ length: n }, () => {
        const len = rng.pick([
          0xffffffff,
          2 ** 31,
          4 * 1024 * 1024 + 1,
          rng.int(2 ** 23, 2 ** 32 - 1),
        ]);
        return (c) => {
          const head = Buffer.alloc(5);
          head.writeUInt32BE(len, 1);
          c.stream.write(Buffer.concat([head, Buffer.from([0x1a, 0x00])]));
        };
      }),
    );
    expect(ends.map((e) => e.grpcStatus)).toEqual(Array(n).fill('8'));
    const after = await counter('persist_pubsub_server_rejections_total', {
      limit: 'message_size',
    });
    expect(after - before).toBe(n);
    await healthyPair();
  });
});
