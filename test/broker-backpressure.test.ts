/**
 * Backpressure over real HTTP/2 flow control: a subscriber that never reads does not slow the
 * others, what the broker holds for it stays bounded (the rest is dropped and counted), it is
 * closed with RESOURCE_EXHAUSTED (RST_STREAM ENHANCE_YOUR_CALM, which gRPC clients map to that
 * status) once stuck past the deadline, and a slow subscriber that understands extensions gets
 * a gap notice when it reads again.
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:http2';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../src/broker/index.js';
import { ProtoPubSubMessageSchema } from '../src/gen/mz_persist_client/internal/service/pubsub_pb.js';
import { openClient, openRaw, until } from './support/grpc-clients.js';

const shard = () => `s${randomUUID()}`;
const MAX_QUEUE_MESSAGES = 256;
const MAX_QUEUE_BYTES = 64 * 1024;
const PATIENT_QUEUE_MESSAGES = 1024;
const PATIENT_QUEUE_BYTES = 1024 * 1024;
let broker: Broker;
let address: string;

beforeAll(async () => {
  broker = createBroker({
    listen: { host: '127.0.0.1', port: 0 },
    limits: {
      maxQueueMessages: MAX_QUEUE_MESSAGES,
      maxQueueBytes: MAX_QUEUE_BYTES,
      stuckConnectionTimeoutMs: 1500,
    },
  });
  await broker.start();
  address = `127.0.0.1:${broker.address.port}`;
});

afterAll(async () => {
  await broker.close({ deadlineMs: 100 });
});

const subscribeFrame = (shardId: string) =>
  toBinary(
    ProtoPubSubMessageSchema,
    create(ProtoPubSubMessageSchema, { message: { case: 'subscribe', value: { shardId } } }),
  );

function conn(connIdPredicate: (c: { callerId: string }) => boolean) {
  return broker.listConnections({ pageSize: 1000 }).items.find(connIdPredicate);
}

describe('a subscriber that never reads', () => {
  it('does not slow the others and what the broker holds for it stays bounded', async () => {
    const patient = createBroker({
      listen: { host: '127.0.0.1', port: 0 },
      limits: {
        maxQueueMessages: PATIENT_QUEUE_MESSAGES,
        maxQueueBytes: PATIENT_QUEUE_BYTES,
        stuckConnectionTimeoutMs: 60_000,
      },
    });
    await patient.start();
    const address = `127.0.0.1:${patient.address.port}`;
    const conn = (p: (c: { callerId: string }) => boolean) =>
      patient.listConnections({ pageSize: 1000 }).items.find(p);
    const s = shard();
    const stuck = openRaw(address, { headers: { 'persist-pubsub-caller-id': 'stuck' } });
    stuck.stream.pause();
    stuck.sendMessage(subscribeFrame(s));
    const fast = await openClient('grpc-js', address, { callerId: 'fast' });
    const pub = await openClient('connect', address, { callerId: 'pub' });
    fast.subscribe(s);
    await until(
      () =>
        patient.listShards({ pageSize: 1000 }).items.find((x) => x.shardId === s)?.subscribers ===
        2,
      5000,
      'two subscribers',
    );
    const total = 8000;
    const diff = new Uint8Array(1024);
    const t0 = Date.now();
    let maxQueueBytes = 0;
    let maxQueueMessages = 0;
    let info: ReturnType<typeof conn>;
    const sample = () => {
      const now = conn((c) => c.callerId === 'stuck');
      if (now === undefined) return;
      info = now;
      maxQueueBytes = Math.max(maxQueueBytes, now.queueBytes);
      maxQueueMessages = Math.max(maxQueueMessages, now.queueMessages);
    };
    for (let n = 1; n <= total; n++) {
      pub.push(s, BigInt(n), diff);
      if (n % 50 === 0) {
        await new Promise((r) => setImmediate(r));
        sample();
      }
    }
    const sampler = setInterval(sample, 5);
    await fast.waitFor(total, 20_000);
    clearInterval(sampler);
    const elapsedMs = Date.now() - t0;
    // Every diff reached the reading subscriber, in order.
    const seqnos = fast.received.map((m) =>
      m.message.case === 'pushDiff' ? Number(m.message.value.seqno) : -1,
    );
    expect(seqnos).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(info).toBeDefined();
    // Bounded: the queue never exceeds its limits, and nearly everything else was dropped.
    expect(maxQueueBytes).toBeLessThanOrEqual(PATIENT_QUEUE_BYTES);
    expect(maxQueueMessages).toBeLessThanOrEqual(PATIENT_QUEUE_MESSAGES);
    expect(maxQueueBytes).toBeGreaterThan(0);
    // What left the queue sits in the HTTP/2 window (64 KiB), the stream buffer (16 KiB) and at
    // most one eager write (half the queue): under 700 diffs of 1 KiB. The rest was dropped.
    sample();
    expect(info!.dropped + info!.queueMessages).toBeGreaterThan(total - 700);
    // Every drop is counted: the broker's counter is exactly the stuck subscriber's drops (the
    // only subscriber that dropped).
    const counted = (await patient.registry.metrics()).match(
      /dropped_diffs_total\{reason="queue_full"\} (\d+)/,
    );
    expect(Number(counted?.[1])).toBe(info!.dropped);
    expect(elapsedMs).toBeLessThan(20_000);
    stuck.close();
    fast.close();
    pub.close();
    await patient.close({ deadlineMs: 100 });
  });

  it('is reset with ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED) once stuck past the deadline', async () => {
    const s = shard();
    const stuck = openRaw(address, { headers: { 'persist-pubsub-caller-id': 'stuck2' } });
    stuck.stream.pause();
    stuck.sendMessage(subscribeFrame(s));
    const pub = await openClient('grpc-js', address);
    await until(
      () =>
        broker.listShards({ pageSize: 1000 }).items.find((x) => x.shardId === s)?.subscribers === 1,
      5000,
      'subscriber',
    );
    const t0 = Date.now();
    for (let n = 1; n <= 2000; n++) {
      pub.push(s, BigInt(n), new Uint8Array(1024));
      if (n % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    const end = await stuck.ended;
    expect(end.rstCode).toBe(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    await until(() => conn((c) => c.callerId === 'stuck2') === undefined, 5000, 'stuck removed');
    expect(await broker.registry.metrics()).toMatch(
      /connections_closed_total\{status="RESOURCE_EXHAUSTED"\} 1/,
    );
    stuck.close();
    pub.close();
  });
});

describe('a slow subscriber that understands extensions', () => {
  it('gets a gap notice with the first missed seqno once it reads again', async () => {
    const s = shard();
    const slow = openRaw(address, {
      headers: { 'persist-pubsub-caller-id': 'slow', 'persist-pubsub-extensions': '1' },
    });
    slow.stream.pause();
    slow.sendMessage(subscribeFrame(s));
    const pub = await openClient('grpc-js', address);
    await until(
      () =>
        broker.listShards({ pageSize: 1000 }).items.find((x) => x.shardId === s)?.subscribers === 1,
      5000,
      'subscriber',
    );
    const diff = new Uint8Array(1024);
    for (let n = 1; n <= 2000; n++) {
      pub.push(s, BigInt(n), diff);
      if (n % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    await until(() => (conn((c) => c.callerId === 'slow')?.dropped ?? 0) > 0, 5000, 'drops');
    slow.stream.resume();
    await until(
      () =>
        slow.messages.some((m) => fromBinary(ProtoPubSubMessageSchema, m).message.case === 'gap'),
      5000,
      'gap notice',
    );
    const decoded = slow.messages.map((m) => fromBinary(ProtoPubSubMessageSchema, m));
    const gaps = decoded.filter((m) => m.message.case === 'gap');
    expect(gaps).toHaveLength(1);
    const gap = gaps[0]!.message.value as {
      shardId: string;
      reason: number;
      fromSeqno: bigint;
      dropped: bigint;
    };
    const pushes = decoded.flatMap((m) =>
      m.message.case === 'pushDiff' ? [m.message.value.seqno] : [],
    );
    expect(gap.shardId).toBe(s);
    expect(gap.reason).toBe(1); // SLOW_CONSUMER
    // The first missed seqno follows the last delivered one before the drops began.
    expect(pushes).not.toContain(gap.fromSeqno);
    expect(gap.fromSeqno).toBeGreaterThan(1n);
    expect(Number(gap.dropped)).toBe(conn((c) => c.callerId === 'slow')?.dropped);
    slow.close();
    pub.close();
  });
});
