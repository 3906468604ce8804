/**
 * The reference pubsub server's scenarios (Materialize `rpc.rs` tests), over loopback with three
 * independent real gRPC clients: grpc-js, connect-node and Python grpcio.
 */
import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../src/broker/index.js';
import { ProtoPubSubMessageSchema } from '../src/gen/mz_persist_client/internal/service/pubsub_pb.js';
import {
  type ClientKind,
  clientMissing,
  expectQuiet,
  openClient,
  type TestClient,
  until,
} from './support/grpc-clients.js';

const FIXED_NOW_MS = 1_700_000_000_123;
const shard = () => `s${randomUUID()}`;

let broker: Broker;
let address: string;
const open: TestClient[] = [];

beforeAll(async () => {
  broker = createBroker({ listen: { host: '127.0.0.1', port: 0 }, now: () => FIXED_NOW_MS });
  await broker.start();
  address = `127.0.0.1:${broker.address.port}`;
});

afterAll(async () => {
  await broker.close({ deadlineMs: 100 });
});

afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

async function client(kind: ClientKind, callerId?: string): Promise<TestClient> {
  const c = await openClient(kind, address, { callerId: callerId ?? `test-${kind}` });
  open.push(c);
  return c;
}

function subscribers(shardId: string): number {
  let token: string | undefined;
  do {
    const page = broker.listShards({ pageSize: 1000, pageToken: token });
    const hit = page.items.find((s) => s.shardId === shardId);
    if (hit) return hit.subscribers;
    token = page.nextPageToken;
  } while (token);
  return 0;
}

/** Subscribes and waits until the broker has the subscription. */
async function subscribed(c: TestClient, shardId: string, expected: number): Promise<void> {
  c.subscribe(shardId);
  await until(
    () => subscribers(shardId) >= expected,
    5000,
    `${expected} subscribers of ${shardId}`,
  );
}

const diff = (s: string) => new TextEncoder().encode(s);

describe.each<ClientKind>(['grpc-js', 'connect', 'python'])(
  'reference scenarios, %s client',
  (kind) => {
    const test = it.skipIf(clientMissing(kind));
    test('one connection: a push is not echoed to its sender, but reaches others', async () => {
      const c = await client(kind);
      const witness = await client('grpc-js');
      const s = shard();
      await subscribed(c, s, 1);
      await subscribed(witness, s, 2);
      c.push(s, 7n, diff('hello'));
      const [m] = await witness.waitFor(1);
      expect(m?.message.case).toBe('pushDiff');
      if (m?.message.case !== 'pushDiff') throw new Error('unreachable');
      expect(m.message.value.shardId).toBe(s);
      expect(m.message.value.seqno).toBe(7n);
      expect(new TextDecoder().decode(m.message.value.diff)).toBe('hello');
      // The broker re-stamps forwarded messages with its own time.
      expect(m.timestamp?.secs).toBe(BigInt(Math.floor(FIXED_NOW_MS / 1000)));
      expect(m.timestamp?.nanos).toBe((FIXED_NOW_MS % 1000) * 1_000_000);
      await expectQuiet(c, 150);
    });

    test('one connection: subscribe and unsubscribe are idempotent', async () => {
      const c = await client(kind);
      const pub = await client('grpc-js');
      const s = shard();
      c.subscribe(s);
      await subscribed(c, s, 1);
      expect(subscribers(s)).toBe(1);
      pub.push(s, 1n, diff('a'));
      await c.waitFor(1);
      await expectQuiet(c, 100);
      c.unsubscribe(s);
      c.unsubscribe(s);
      await until(() => subscribers(s) === 0, 5000, 'unsubscribed');
      pub.push(s, 2n, diff('b'));
      await expectQuiet(c, 150);
      expect(c.received).toHaveLength(1);
    });

    test('one connection: many shards, each diff on its own shard', async () => {
      const c = await client(kind);
      const pub = await client('grpc-js');
      const shards = Array.from({ length: 40 }, shard);
      for (const s of shards) c.subscribe(s);
      await until(() => shards.every((s) => subscribers(s) === 1), 5000, 'all subscriptions');
      shards.forEach((s, i) => {
        pub.push(s, BigInt(i + 1), diff(`d${i}`));
      });
      const got = await c.waitFor(shards.length);
      const bySeqno = new Map(
        got.map((m) => {
          if (m.message.case !== 'pushDiff') throw new Error(`unexpected ${m.message.case}`);
          return [Number(m.message.value.seqno), m.message.value] as const;
        }),
      );
      shards.forEach((s, i) => {
        const v = bySeqno.get(i + 1);
        expect(v?.shardId).toBe(s);
        expect(new TextDecoder().decode(v?.diff)).toBe(`d${i}`);
      });
      await expectQuiet(c, 100);
    });

    test('one connection: disconnect removes its subscriptions and empty shards', async () => {
      const c = await client(kind);
      const shards = [shard(), shard(), shard()];
      for (const s of shards) c.subscribe(s);
      await until(() => shards.every((s) => subscribers(s) === 1), 5000, 'subscriptions');
      const before = broker.listConnections({ pageSize: 1000 }).items.length;
      c.close();
      await until(() => shards.every((s) => subscribers(s) === 0), 5000, 'cleanup');
      await until(
        () => broker.listConnections({ pageSize: 1000 }).items.length === before - 1,
        5000,
        'connection removed',
      );
    });

    test('many connections: fan-out to every subscriber but the sender', async () => {
      const cs = [await client(kind), await client(kind), await client(kind), await client(kind)];
      const s = shard();
      for (let i = 0; i < cs.length; i++) await subscribed(cs[i]!, s, i + 1);
      cs[0]!.push(s, 3n, diff('x'));
      for (const c of cs.slice(1)) {
        const [m] = await c.waitFor(1);
        expect(m?.message.case === 'pushDiff' && m.message.value.seqno).toBe(3n);
      }
      cs[2]!.push(s, 4n, diff('y'));
      for (const c of [cs[0]!, cs[1]!, cs[3]!]) {
        await until(() =>
          c.received.some((m) => m.message.case === 'pushDiff' && m.message.value.seqno === 4n),
        );
      }
      await expectQuiet(cs[0]!, 100);
      expect(cs[0]!.received).toHaveLength(1);
      expect(cs[2]!.received).toHaveLength(1);
    });

    test('many connections: shards with zero and with one subscriber', async () => {
      const a = await client(kind);
      const b = await client(kind);
      const none = shard();
      const one = shard();
      await subscribed(a, one, 1);
      // Zero subscribers: accepted, goes nowhere.
      b.push(none, 1n, diff('nobody'));
      // One subscriber, who is the sender: goes nowhere.
      a.push(one, 1n, diff('self'));
      // One subscriber, another sender: delivered.
      b.push(one, 2n, diff('other'));
      const [m] = await a.waitFor(1);
      expect(m?.message.case === 'pushDiff' && m.message.value.seqno).toBe(2n);
      await expectQuiet(a, 100);
      await expectQuiet(b, 0);
      expect(b.received).toHaveLength(0);
    });

    test('half-closing the request stream ends the call with OK', async () => {
      const c = await client(kind);
      c.end();
      expect((await c.ended).code).toBe('OK');
    });
  },
);

describe('extension fields', () => {
  it('forwards unknown/extension fields of push_diff verbatim (origin_timestamp)', async () => {
    const pub = await client('grpc-js');
    const sub = await client('connect');
    const s = shard();
    await subscribed(sub, s, 1);
    pub.send(
      create(ProtoPubSubMessageSchema, {
        message: {
          case: 'pushDiff',
          value: {
            shardId: s,
            seqno: 9n,
            diff: diff('z'),
            originTimestamp: { secs: 42n, nanos: 7 },
          },
        },
      }),
    );
    const [m] = await sub.waitFor(1);
    if (m?.message.case !== 'pushDiff') throw new Error('expected a push');
    expect(m.message.value.originTimestamp?.secs).toBe(42n);
    expect(m.message.value.originTimestamp?.nanos).toBe(7);
  });

  it('counts calls per caller id in metrics', async () => {
    const c = await client('grpc-js', 'metrics-caller-1');
    const s = shard();
    await subscribed(c, s, 1);
    const text = await broker.registry.metrics();
    expect(text).toMatch(
      /persist_pubsub_server_caller_calls_total\{caller_id="metrics-caller-1",call="subscribe"\} 1/,
    );
    expect(text).toMatch(/persist_pubsub_server_active_connections \d+/);
  });
});
