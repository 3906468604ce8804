/**
 * Every limit refuses with a clear gRPC status and a metric, and nothing a peer sends (malformed
 * protobuf, bad frames, compression, wrong content types, random bytes) crashes the broker or
 * disturbs other clients.
 */
import { randomUUID } from 'node:crypto';
import { create, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../src/broker/index.js';
import {
  ProtoPubSubMessageSchema,
  ProtoSubscribeSchema,
} from '../src/gen/mz_persist_client/internal/service/pubsub_pb.js';
import {
  type ClientKind,
  clientMissing,
  openClient,
  openRaw,
  type TestClient,
  until,
} from './support/grpc-clients.js';

const shard = () => `s${randomUUID()}`;
let broker: Broker;
let address: string;
const open: TestClient[] = [];

beforeAll(async () => {
  broker = createBroker({
    listen: { host: '127.0.0.1', port: 0 },
    limits: {
      maxMessageBytes: 1024,
      maxConnections: 6,
      maxSubscriptionsPerConnection: 3,
      maxShardIdBytes: 64,
    },
  });
  await broker.start();
  address = `127.0.0.1:${broker.address.port}`;
});

afterAll(async () => {
  await broker.close({ deadlineMs: 100 });
});

afterEach(async () => {
  for (const c of open.splice(0)) c.close();
  await until(() => broker.listConnections().items.length === 0, 5000, 'connections gone');
});

async function client(kind: ClientKind = 'grpc-js'): Promise<TestClient> {
  const c = await openClient(kind, address);
  open.push(c);
  return c;
}

async function rejections(limit: string): Promise<number> {
  const text = await broker.registry.metrics();
  const m = text.match(
    new RegExp(`persist_pubsub_server_rejections_total\\{limit="${limit}"\\} (\\d+)`),
  );
  return m ? Number(m[1]) : 0;
}

/** A healthy pair keeps working: proves one bad peer did not disturb others. */
async function healthyPair(): Promise<void> {
  const a = await client();
  const b = await client();
  const s = shard();
  a.subscribe(s);
  await until(() => broker.listShards({ pageSize: 1000 }).items.some((x) => x.shardId === s));
  b.push(s, 1n, Uint8Array.of(9));
  await a.waitFor(1);
  a.close();
  b.close();
}

describe.each<ClientKind>(['grpc-js', 'python'])('limits (%s)', (kind) => {
  const test = it.skipIf(clientMissing(kind));
  test('message size → RESOURCE_EXHAUSTED', async () => {
    const before = await rejections('message_size');
    const c = await client(kind);
    c.push(shard(), 1n, new Uint8Array(2000));
    expect((await c.ended).code).toBe('RESOURCE_EXHAUSTED');
    expect(await rejections('message_size')).toBe(before + 1);
  });

  test('subscriptions per connection → RESOURCE_EXHAUSTED', async () => {
    const before = await rejections('subscriptions');
    const c = await client(kind);
    for (let i = 0; i < 4; i++) c.subscribe(shard());
    const end = await c.ended;
    expect(end.code).toBe('RESOURCE_EXHAUSTED');
    expect(await rejections('subscriptions')).toBe(before + 1);
  });

  test('shard id too long → INVALID_ARGUMENT', async () => {
    const before = await rejections('shard_id_length');
    const c = await client(kind);
    c.subscribe(`s${'x'.repeat(100)}`);
    const end = await c.ended;
    expect(end.code).toBe('INVALID_ARGUMENT');
    expect(await rejections('shard_id_length')).toBe(before + 1);
  });

  test('shard id charset → INVALID_ARGUMENT', async () => {
    const before = await rejections('shard_id_charset');
    const c = await client(kind);
    c.push('s with spaces', 1n, Uint8Array.of(1));
    expect((await c.ended).code).toBe('INVALID_ARGUMENT');
    expect(await rejections('shard_id_charset')).toBe(before + 1);
  });
});

describe('connection limit', () => {
  it('refuses connections over maxConnections with RESOURCE_EXHAUSTED', async () => {
    const cs = [];
    for (let i = 0; i < 6; i++) {
      const c = await client();
      c.subscribe(shard());
      cs.push(c);
    }
    await until(() => broker.listConnections().items.length === 6, 5000, '6 connections');
    const extra = await client('connect');
    expect((await extra.ended).code).toBe('RESOURCE_EXHAUSTED');
    expect(await rejections('connections')).toBeGreaterThan(0);
  });
});

describe('malformed input', () => {
  it('invalid UTF-8 in a shard id → INVALID_ARGUMENT, others unaffected', async () => {
    const sub = create(ProtoSubscribeSchema, { shardId: 'x' });
    const bytes = Buffer.from(toBinary(ProtoSubscribeSchema, sub));
    bytes[bytes.length - 1] = 0xff;
    const msg = Buffer.concat([Buffer.from([0x1a, bytes.length]), bytes]);
    const before = await rejections('shard_id_charset');
    const raw = openRaw(address);
    raw.sendMessage(msg);
    const end = await raw.ended;
    expect(end.grpcStatus).toBe('3');
    expect(await rejections('shard_id_charset')).toBe(before + 1);
    raw.close();
    await healthyPair();
  });

  it('garbage protobuf → INVALID_ARGUMENT with a parse-error metric', async () => {
    const parseErrors = async () => {
      const m = (await broker.registry.metrics()).match(
        /parse_errors_total\{code="truncated"\} (\d+)/,
      );
      return m ? Number(m[1]) : 0;
    };
    const before = await parseErrors();
    const raw = openRaw(address);
    raw.sendMessage(Uint8Array.of(0x12, 0x05, 0x0a));
    const end = await raw.ended;
    expect(end.grpcStatus).toBe('3');
    raw.close();
    expect(await parseErrors()).toBe(before + 1);
  });

  it('a compressed message → UNIMPLEMENTED; a bad flag → INTERNAL', async () => {
    const before = await rejections('compressed');
    const gz = openRaw(address, { headers: { 'grpc-encoding': 'gzip' } });
    gz.sendMessage(Uint8Array.of(1, 2, 3), 1);
    const e1 = await gz.ended;
    expect(e1.grpcStatus).toBe('12');
    expect(await rejections('compressed')).toBe(before + 1);
    gz.close();
    const bad = openRaw(address);
    bad.sendMessage(Uint8Array.of(1), 9);
    expect((await bad.ended).grpcStatus).toBe('13');
    bad.close();
  });

  it('unknown method → UNIMPLEMENTED; wrong content type or method → 415', async () => {
    const unknown = openRaw(address, {
      path: '/mz_persist_client.internal.service.ProtoPersistPubSub/Nope',
    });
    unknown.stream.end();
    const e = await unknown.ended;
    expect(e.grpcStatus).toBe('12');
    unknown.close();
    const json = openRaw(address, { headers: { 'content-type': 'application/json' } });
    json.stream.end();
    expect((await json.ended).httpStatus).toBe(415);
    json.close();
    const get = openRaw(address, { headers: { ':method': 'GET' } });
    expect((await get.ended).httpStatus).toBe(415);
    get.close();
  });

  it('fuzz: random frames on many streams never crash the broker; a client keeps working', async () => {
    const watcher = await client('connect');
    const pub = await client();
    const s = shard();
    watcher.subscribe(s);
    await until(() => broker.listShards({ pageSize: 1000 }).items.some((x) => x.shardId === s));
    const samples = fc.sample(
      fc.oneof(
        fc.uint8Array({ maxLength: 64 }),
        fc.uint8Array({ maxLength: 64 }).map((b) => Uint8Array.of(0x12, b.length, ...b)),
        fc.uint8Array({ maxLength: 64 }).map((b) => Uint8Array.of(0x1a, b.length, ...b)),
      ),
      { numRuns: 150, seed: 42 },
    );
    const calls = samples.map((bytes, i) => {
      const raw = openRaw(address);
      raw.sendMessage(bytes);
      if (i % 3 === 0) raw.stream.write(Buffer.from(bytes)); // raw unframed junk too
      raw.stream.end();
      return raw;
    });
    let n = 0n;
    for (const raw of calls) {
      await raw.ended;
      raw.close();
      pub.push(s, ++n, Uint8Array.of(1));
    }
    await watcher.waitFor(calls.length, 10_000);
    expect(broker.state).toBe('serving');
    // Also a well-formed message with every field type the parser skips.
    const ok = toBinary(
      ProtoPubSubMessageSchema,
      create(ProtoPubSubMessageSchema, {
        timestamp: { secs: 1n, nanos: 2 },
        message: { case: 'subscribe', value: { shardId: shard() } },
      }),
    );
    const raw = openRaw(address);
    raw.sendMessage(
      Buffer.concat([
        Buffer.from(ok),
        Buffer.from([0x78, 0x01, 0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]),
      ]),
    );
    raw.stream.end();
    expect((await raw.ended).grpcStatus).toBe('0');
    raw.close();
  });
});
