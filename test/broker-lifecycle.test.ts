/**
 * Lifecycle and extensions over loopback: health Check/Watch/List, graceful drain with a
 * deadline, destroy, max connection age, keepalive against a dead peer, runtime flags, resume
 * with gap notices, and same-process connections mixed with gRPC ones.
 */
import { randomUUID } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Broker,
  BrokerError,
  type BrokerOptions,
  createBroker,
  type InProcessMessage,
} from '../src/broker/index.js';
import {
  HealthCheckRequestSchema,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
} from '../src/gen/grpc/health/v1/health_pb.js';
import { encodeSubscribe } from '../src/protocol/index.js';
import { createFakeClock } from '../src/util/index.js';
import { openClient, openRaw, type TestClient, until } from './support/grpc-clients.js';
import { settled } from './support/wait.js';

const shard = () => `s${randomUUID()}`;
const brokers: Broker[] = [];
const clients: TestClient[] = [];

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const b of brokers.splice(0)) b.destroy();
});

async function start(
  options: Omit<BrokerOptions, 'listen'> = {},
): Promise<{ broker: Broker; address: string }> {
  const broker = createBroker({ listen: { host: '127.0.0.1', port: 0 }, ...options });
  brokers.push(broker);
  await broker.start();
  return { broker, address: `127.0.0.1:${broker.address.port}` };
}

async function client(address: string, headers?: Record<string, string>): Promise<TestClient> {
  const c = await openClient('grpc-js', address, { headers });
  clients.push(c);
  return c;
}

async function subscribed(
  broker: Broker,
  c: TestClient,
  s: string,
  resume?: bigint,
): Promise<void> {
  c.subscribe(s, resume);
  await until(() => broker.listShards({ pageSize: 1000 }).items.some((x) => x.shardId === s));
}

const ser = (service: string) =>
  Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service })));
const de = (b: Buffer) => fromBinary(HealthCheckResponseSchema, b);

function check(address: string, service: string): Promise<HealthCheckResponse> {
  const c = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise<HealthCheckResponse>((resolve, reject) =>
    c.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      (s: string) => ser(s),
      de,
      service,
      (err, v) => (err ? reject(err) : resolve(v!)),
    ),
  ).finally(() => c.close());
}

describe('health', () => {
  it('Check serves "" and the pubsub service, NOT_FOUND for others; Watch sees the drain', async () => {
    const { broker, address } = await start();
    expect((await check(address, '')).status).toBe(1);
    expect(
      (await check(address, 'mz_persist_client.internal.service.ProtoPersistPubSub')).status,
    ).toBe(1);
    await expect(check(address, 'nope')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    const c = new grpc.Client(address, grpc.credentials.createInsecure());
    const watch = c.makeServerStreamRequest(
      '/grpc.health.v1.Health/Watch',
      (s: string) => ser(s),
      de,
      '',
    );
    const seen: number[] = [];
    watch.on('data', (r: HealthCheckResponse) => seen.push(r.status));
    watch.on('error', () => {});
    await until(() => seen.length === 1);
    expect(seen).toEqual([1]);
    const closing = broker.close({ deadlineMs: 200 });
    await until(() => seen.length === 2);
    expect(seen).toEqual([1, 2]);
    await closing;
    c.close();
  });
});

describe('drain and destroy', () => {
  it('close(): refuses new calls, ends open streams with UNAVAILABLE at the deadline', async () => {
    const { broker, address } = await start();
    const c = await client(address);
    await subscribed(broker, c, shard());
    const t0 = Date.now();
    const closing = broker.close({ deadlineMs: 300 });
    expect(broker.state).toBe('draining');
    expect(broker.isReady()).toBe(false);
    const end = await c.ended;
    expect(end.code).toBe('UNAVAILABLE');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    await closing;
    expect(broker.state).toBe('closed');
    expect(broker.close()).toBe(closing);
    const late = await client(address);
    expect((await late.ended).code).toBe('UNAVAILABLE');
  });

  it('close() finishes early when every client has gone', async () => {
    const { broker, address } = await start();
    const c = await client(address);
    await subscribed(broker, c, shard());
    const t0 = Date.now();
    const closing = broker.close({ deadlineMs: 10_000 });
    c.end();
    await closing;
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('destroy() ends everything at once', async () => {
    const { broker, address } = await start();
    const c = await client(address);
    await subscribed(broker, c, shard());
    broker.destroy();
    expect(broker.state).toBe('closed');
    expect(['UNAVAILABLE', 'CANCELLED', 'INTERNAL']).toContain((await c.ended).code);
  });
});

describe('connection management', () => {
  it('max connection age ends streams with UNAVAILABLE so clients reconnect', async () => {
    const { broker, address } = await start({
      maxConnectionAgeMs: 300,
      maxConnectionAgeGraceMs: 200,
    });
    const c = await client(address);
    await subscribed(broker, c, shard());
    const t0 = Date.now();
    const end = await c.ended;
    expect(end.code).toBe('UNAVAILABLE');
    expect(end.details).toMatch(/max connection age/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('after the max-age GOAWAY, open streams run on for the grace, then end with UNAVAILABLE', async () => {
    const clock = createFakeClock();
    const { broker, address } = await start({
      clock,
      maxConnectionAgeMs: 1000,
      maxConnectionAgeGraceMs: 5000,
    });
    const s = shard();
    const sub = openRaw(address);
    const goaway = new Promise<void>((r) => sub.session.once('goaway', () => r()));
    sub.sendMessage(encodeSubscribe(s, undefined, undefined, false));
    await until(() => broker.listShards({ pageSize: 1000 }).items.some((x) => x.shardId === s));
    const pub = await client(address);
    await clock.advance(1100); // past both connections' age (1000 ms ± 10%)
    await goaway;
    pub.push(s, 1n, Uint8Array.of(1));
    await until(() => sub.messages.length === 1);
    await clock.advance(4700); // 5800 ms: short of the earliest grace end (900 + 5000)
    expect(await settled(sub.ended)).toBe(false);
    pub.push(s, 2n, Uint8Array.of(2));
    await until(() => sub.messages.length === 2);
    await clock.advance(400); // 6200 ms: past the latest grace end (1100 + 5000)
    const end = await sub.ended;
    expect(end.grpcStatus).toBe('14');
    expect(end.grpcMessage).toMatch(/max connection age/);
    expect((await pub.ended).code).toBe('UNAVAILABLE');
  });

  it('with no grace, the max-age GOAWAY ends the open streams at once', async () => {
    const clock = createFakeClock();
    const { broker, address } = await start({
      clock,
      maxConnectionAgeMs: 1000,
      maxConnectionAgeGraceMs: 0,
    });
    const c = await client(address);
    await subscribed(broker, c, shard());
    await clock.advance(1100);
    expect((await c.ended).code).toBe('UNAVAILABLE');
  });

  it('keepalive closes a peer that never answers pings', async () => {
    const { address, broker } = await start({ keepaliveTimeMs: 100, keepaliveTimeoutMs: 100 });
    const [host, port] = address.split(':');
    const socket = netConnect({ host: host!, port: Number(port) });
    socket.on('error', () => {});
    // The HTTP/2 client preface and an empty SETTINGS frame, then silence: no ACKs, no PING replies.
    socket.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
    socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
    socket.resume();
    const t0 = Date.now();
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(broker.state).toBe('serving');
  });
});

describe('runtime flags', () => {
  it('forwardPushes off stops forwarding at the next message; on resumes it', async () => {
    const { broker, address } = await start();
    const sub = await client(address);
    const pub = await client(address);
    const s = shard();
    await subscribed(broker, sub, s);
    broker.setFlags({ forwardPushes: false });
    expect(broker.flags.forwardPushes).toBe(false);
    pub.push(s, 1n, Uint8Array.of(1));
    await new Promise((r) => setTimeout(r, 150));
    expect(sub.received).toHaveLength(0);
    broker.setFlags({ forwardPushes: true });
    pub.push(s, 2n, Uint8Array.of(2));
    const [m] = await sub.waitFor(1);
    expect(m?.message.case === 'pushDiff' && m.message.value.seqno).toBe(2n);
    expect(() => broker.setFlags({ forwardPushes: 'yes' as unknown as boolean })).toThrow(
      /forwardPushes/,
    );
  });
});

describe('resume', () => {
  it('a subscribe with resume_after_seqno replays held diffs in order, then live ones', async () => {
    const { broker, address } = await start({ limits: { resumeRingSize: 4 } });
    const pub = await client(address);
    const s = shard();
    for (let n = 1n; n <= 6n; n++) pub.push(s, n, Uint8Array.of(Number(n)));
    // Wait until the broker has taken all six pushes (no subscriber yet: they only fill the ring).
    for (let i = 0; i < 200; i++) {
      if (/calls_total\{call="push"\} 6\b/.test(await broker.registry.metrics())) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const a = await client(address);
    await subscribed(broker, a, s, 3n);
    const got = await a.waitFor(3);
    expect(got.map((m) => (m.message.case === 'pushDiff' ? m.message.value.seqno : -1n))).toEqual([
      4n,
      5n,
      6n,
    ]);
    pub.push(s, 7n, Uint8Array.of(7));
    const [, , , live] = await a.waitFor(4);
    expect(live?.message.case === 'pushDiff' && live.message.value.seqno).toBe(7n);
    // The ring holds 4..7 now: resuming after 1 is a gap, reported after the held diffs.
    const b = await client(address);
    b.subscribe(s, 1n);
    const bm = await b.waitFor(5);
    expect(
      bm.slice(0, 4).map((m) => (m.message.case === 'pushDiff' ? m.message.value.seqno : -1n)),
    ).toEqual([4n, 5n, 6n, 7n]);
    const gap = bm[4]!;
    if (gap.message.case !== 'gap') throw new Error(`expected a gap, got ${gap.message.case}`);
    expect(gap.message.value.reason).toBe(2); // RESUME_UNAVAILABLE
    expect(gap.message.value.fromSeqno).toBe(2n);
    expect(gap.message.value.shardId).toBe(s);
  });
});

describe('same-process connections', () => {
  it('fan out to and from gRPC clients without echo, decoded', async () => {
    const { broker, address } = await start({ now: () => 1_700_000_000_000 });
    const s = shard();
    const got: InProcessMessage[] = [];
    const local = broker.connectInProcess({ callerId: 'local-1', onMessage: (m) => got.push(m) });
    local.subscribe(s);
    local.subscribe(s);
    const remote = await client(address);
    await subscribed(broker, remote, s);
    await until(() => broker.listShards().items.find((x) => x.shardId === s)?.subscribers === 2);
    // in-process → gRPC, with the origin timestamp extension
    local.push(s, 5n, Uint8Array.of(1, 2), 1_600_000_000_500);
    const [m] = await remote.waitFor(1);
    if (m?.message.case !== 'pushDiff') throw new Error('expected a push');
    expect(m.message.value.seqno).toBe(5n);
    expect([...m.message.value.diff]).toEqual([1, 2]);
    expect(m.message.value.originTimestamp).toMatchObject({
      secs: 1_600_000_000n,
      nanos: 500_000_000,
    });
    expect(m.timestamp?.secs).toBe(1_700_000_000n);
    // gRPC → in-process
    remote.push(s, 6n, Uint8Array.of(3));
    await until(() => got.length === 1);
    expect(got[0]).toMatchObject({
      kind: 'push',
      shardId: s,
      seqno: 6n,
      timestampMs: 1_700_000_000_000,
    });
    expect([...(got[0] as { diff: Uint8Array }).diff]).toEqual([3]);
    // No echo to the in-process sender.
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toHaveLength(1);
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return err instanceof BrokerError ? err.code : `not a BrokerError: ${err}`;
      }
      return 'no error';
    };
    expect(code(() => local.push('bad shard', 1n, new Uint8Array()))).toBe('invalid_argument');
    expect(code(() => local.push(s, -1n, new Uint8Array()))).toBe('invalid_argument');
    local.close();
    local.close();
    expect(code(() => local.subscribe(s))).toBe('unavailable');
    await until(() => broker.listShards().items.find((x) => x.shardId === s)?.subscribers === 1);
  });

  it('the owner learns when the broker closes the connection', async () => {
    const { broker } = await start();
    let closed: { code: string } | undefined;
    broker.connectInProcess({ onMessage: () => {}, onClose: (r) => (closed = r) });
    await broker.close({ deadlineMs: 0 });
    expect(closed?.code).toBe('UNAVAILABLE');
    expect(() => broker.connectInProcess({ onMessage: () => {} })).toThrow(
      expect.objectContaining({ code: 'unavailable' }),
    );
  });
});

describe('options', () => {
  it('are validated at construction, naming the bad field', () => {
    expect(() => createBroker({ limits: { maxQueueMessages: 0 } })).toThrow(
      /limits.maxQueueMessages/,
    );
    expect(() => createBroker({ listen: { host: '', port: 1 } })).toThrow(/listen.host/);
    expect(() => createBroker({ listen: { host: 'x', port: 70000 } })).toThrow(/listen.port/);
    expect(() => createBroker({ authToken: 'has space' })).toThrow(/authToken/);
    expect(() => createBroker({ limits: { bogus: 1 } as never })).toThrow(/limits.bogus/);
    expect(() => createBroker({ tls: { cert: '', key: 'k' } })).toThrow(/tls.cert/);
  });
});

describe('cancellation', () => {
  it('start() honours an aborted signal; close() with an aborted signal destroys at once', async () => {
    const b = createBroker({ listen: { host: '127.0.0.1', port: 0 } });
    brokers.push(b);
    await expect(b.start({ signal: AbortSignal.abort(new Error('stop')) })).rejects.toThrow('stop');
    const { broker, address } = await start();
    const c = await client(address);
    await subscribed(broker, c, shard());
    const ac = new AbortController();
    const t0 = Date.now();
    const closing = broker.close({ deadlineMs: 10_000, signal: ac.signal });
    ac.abort();
    await closing;
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(broker.state).toBe('closed');
    expect(['UNAVAILABLE', 'CANCELLED', 'INTERNAL']).toContain((await c.ended).code);
  });
});
