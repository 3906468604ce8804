/**
 * Abusive but well-formed traffic against a real broker: thousands of subscribe/unsubscribe per
 * second on one connection, and thousands of idle connections. The broker stays up, its tables
 * return to empty, its gauges and counters say what happened, and a healthy pair of clients is
 * unaffected meanwhile.
 */
import { randomUUID } from 'node:crypto';
import { type ClientHttp2Session, connect as http2Connect } from 'node:http2';
import { create, toBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../../src/broker/index.js';
import { afterH2Receive } from '../../src/broker/node-h2-client.test-support.js';
import { ProtoPubSubMessageSchema } from '../../src/gen/mz_persist_client/internal/service/pubsub_pb.js';
import { openClient, openRaw, until } from '../support/grpc-clients.js';

const shard = () => `s${randomUUID()}`;
let broker: Broker;
let address: string;

beforeAll(async () => {
  broker = createBroker({ listen: { host: '127.0.0.1', port: 0 } });
  await broker.start();
  address = `127.0.0.1:${broker.address.port}`;
});
afterAll(async () => {
  await broker.close({ deadlineMs: 100 });
});

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
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

const frame = (m: Parameters<typeof create<typeof ProtoPubSubMessageSchema>>[1]) => {
  const body = toBinary(ProtoPubSubMessageSchema, create(ProtoPubSubMessageSchema, m));
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, Buffer.from(body)]);
};

/** Round trips of a healthy pair while something else runs; returns each latency in ms. */
async function healthyRoundTrips(count: number): Promise<number[]> {
  const a = await openClient('grpc-js', address);
  const b = await openClient('grpc-js', address);
  const out: number[] = [];
  try {
    const s = shard();
    a.subscribe(s);
    await until(() => broker.listShards({ pageSize: 10_000 }).items.some((x) => x.shardId === s));
    for (let i = 1; i <= count; i++) {
      const t0 = performance.now();
      b.push(s, BigInt(i), Uint8Array.of(i & 0xff));
      await a.waitFor(i, 15_000);
      out.push(performance.now() - t0);
    }
  } finally {
    a.close();
    b.close();
  }
  return out;
}

describe('abusive traffic', () => {
  it('thousands of subscribe/unsubscribe per second on one connection', async () => {
    const n = 5000;
    const who = { caller_id: 'churner' };
    const before = await metric('persist_pubsub_server_caller_calls_total', {
      ...who,
      call: 'subscribe',
    });
    const beforeUnsub = await metric('persist_pubsub_server_caller_calls_total', {
      ...who,
      call: 'unsubscribe',
    });
    const call = openRaw(address, { headers: { 'persist-pubsub-caller-id': 'churner' } });
    const ids = Array.from({ length: 50 }, shard);
    const t0 = performance.now();
    const healthy = healthyRoundTrips(20);
    // Batches of subscribe+unsubscribe pairs, written as fast as the stream takes them.
    for (let i = 0; i < n; i += 500) {
      const chunk: Buffer[] = [];
      for (let j = i; j < i + 500; j++) {
        const shardId = ids[j % ids.length] as string;
        chunk.push(frame({ message: { case: 'subscribe', value: { shardId } } }));
        chunk.push(frame({ message: { case: 'unsubscribe', value: { shardId } } }));
      }
      if (!call.stream.write(Buffer.concat(chunk))) {
        await new Promise((r) => call.stream.once('drain', r));
      }
    }
    const counted = async () =>
      (await metric('persist_pubsub_server_caller_calls_total', { ...who, call: 'unsubscribe' })) -
      beforeUnsub;
    const deadline = Date.now() + 30_000;
    while ((await counted()) < n) {
      if (Date.now() > deadline) throw new Error(`only ${await counted()} of ${n} unsubscribes`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const seconds = (performance.now() - t0) / 1000;
    const lat = await healthy;
    const subs =
      (await metric('persist_pubsub_server_caller_calls_total', { ...who, call: 'subscribe' })) -
      before;
    console.log(
      `[fuzz] churn: ${n} subscribe+unsubscribe pairs in ${seconds.toFixed(2)} s ` +
        `(${Math.round((2 * n) / seconds)} msgs/s); healthy pair max ${Math.max(...lat).toFixed(1)} ms`,
    );
    expect(subs).toBe(n);
    // Every subscription of the churning connection is gone again.
    const mine = new Set(ids);
    expect(
      broker.listShards({ pageSize: 10_000 }).items.filter((x) => mine.has(x.shardId)),
    ).toEqual([]);
    call.stream.end();
    expect((await call.ended).grpcStatus).toBe('0');
    call.close();
    expect(lat).toHaveLength(20);
    expect(broker.state).toBe('serving');
  }, 90_000);

  it('thousands of idle connections: counted, harmless, and released', async () => {
    const n = Number(process.env.FUZZ_IDLE_CONNECTIONS ?? 2000);
    const sessions: ClientHttp2Session[] = [];
    const calls: ReturnType<typeof openRaw>[] = [];
    const active = () => metric('persist_pubsub_server_active_connections');
    const base = await active();
    try {
      for (let i = 0; i < n; i += 100) {
        const batch: Promise<void>[] = [];
        for (let j = i; j < Math.min(n, i + 100); j++) {
          const s = http2Connect(`http://${address}`);
          s.on('error', () => {});
          sessions.push(s);
          calls.push(openRaw(address, { session: s }));
          batch.push(new Promise<void>((r) => s.once('connect', () => r())));
        }
        await Promise.all(batch);
      }
      await until(async () => (await active()) >= base + n, 60_000, `${n} idle connections`);
      const lat = await healthyRoundTrips(10);
      console.log(
        `[fuzz] ${n} idle connections; healthy pair max ${Math.max(...lat).toFixed(1)} ms; ` +
          `heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB (test and broker)`,
      );
      expect(lat).toHaveLength(10);
    } finally {
      // Not in the continuation of a call's answer: see node-h2-client.test-support.ts.
      await afterH2Receive();
      for (const c of calls) c.close();
      for (const s of sessions) s.destroy();
    }
    await until(async () => (await active()) <= base, 60_000, 'idle connections released');
    expect(broker.state).toBe('serving');
  }, 120_000);
});
