/**
 * The gRPC client's push path against the real broker: a burst made in one turn is never
 * dropped for being a burst; the sender drops (and counts) only once its byte bound is really
 * exceeded, and recovers when the wire moves again; keepalive finds a broker that went silent
 * behind a half-open connection (`test/support/fault-proxy.ts`).
 */
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../src/broker/index.js';
import {
  createFlags,
  createGrpcPubSubClient,
  createGrpcTransport,
  createPubSubClient,
  type PubSubClient,
} from '../src/client/index.js';
import { createFakeClock } from '../src/util/index.js';
import { createFaultProxy } from './support/fault-proxy.js';
import { openClient } from './support/grpc-clients.js';
import { until } from './support/wait.js';

const S = 's00000000-0000-0000-0000-0000000b0057';
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function startBroker(): Promise<Broker> {
  const broker = createBroker({
    listen: { host: '127.0.0.1', port: 0 },
    // Room for the whole burst in the subscriber's queue: this test is about the sender.
    limits: { maxQueueMessages: 20_000, maxQueueBytes: 64 * 1024 * 1024 },
  });
  await broker.start();
  cleanup.push(() => broker.destroy());
  return broker;
}

/** A broker and a grpc-js reader subscribed to S on it. */
async function brokerWithReader() {
  const broker = await startBroker();
  const address = `127.0.0.1:${broker.address.port}`;
  const reader = await openClient('grpc-js', address, { callerId: 'reader' });
  cleanup.push(() => reader.close());
  reader.subscribe(S);
  await until(
    () => (broker.listShards().items.find((s) => s.shardId === S)?.subscribers ?? 0) === 1,
    10_000,
  );
  return { address, reader };
}

function writer(url: string, registry: Registry, extra: Record<string, number> = {}) {
  const c: PubSubClient = createGrpcPubSubClient({
    url,
    callerId: 'writer',
    registry,
    flags: createFlags({
      persist_pubsub_reconnect_backoff_ms: 20,
      persist_pubsub_connect_max_backoff_ms: 50,
      ...extra,
    }),
    initialConnectBackoffMs: 10,
  });
  cleanup.push(() => c.close());
  return c;
}

async function counter(registry: Registry, name: string, labels: Record<string, string> = {}) {
  const m = await registry.getSingleMetric(name)?.get();
  return (m?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((a, v) => a + v.value, 0);
}

describe('gRPC push path', () => {
  it('a burst of 5,000 pushes in one turn: zero drops, every one delivered in order', async () => {
    const { address, reader } = await brokerWithReader();
    const registry = new Registry();
    const w = writer(`grpc://${address}`, registry);
    await until(() => w.status.state === 'connected', 10_000);

    const diff = new Uint8Array(500).fill(7);
    let accepted = 0;
    for (let i = 1; i <= 5000; i++) if (w.push(S, BigInt(i), diff)) accepted++;
    expect(accepted).toBe(5000);

    const got = await reader.waitFor(5000, 20_000);
    expect(
      got.map((m) => (m.message.case === 'pushDiff' ? Number(m.message.value.seqno) : -1)),
    ).toEqual(Array.from({ length: 5000 }, (_, i) => i + 1));
    expect(await counter(registry, 'persist_pubsub_client_pushes_dropped_total')).toBe(0);
    expect(
      await counter(registry, 'persist_pubsub_client_call_succeeded_total', { call: 'push' }),
    ).toBe(5000);
  }, 30_000);

  it('drops only past the byte bound while the wire is stalled, counted; recovers after', async () => {
    const broker = await startBroker();
    const proxy = await createFaultProxy(broker.address.port);
    cleanup.push(() => proxy.close());
    const registry = new Registry();
    const boundBytes = 64 * 1024;
    const w = writer(proxy.url, registry, {
      persist_pubsub_client_sender_buffer_bytes: boundBytes,
    });
    await until(() => w.status.state === 'connected', 10_000);

    proxy.stall(60_000);
    const diff = new Uint8Array(8 * 1024).fill(1);
    let accepted = 0;
    let refused = 0;
    // One push per turn, so each turn's write leaves before the next push: only the stalled
    // wire (HTTP/2 flow control, then our buffer) can hold them back.
    for (let i = 1; refused < 10 && i < 2000; i++) {
      if (w.push(S, BigInt(i), diff)) accepted++;
      else refused++;
      await new Promise((r) => setImmediate(r));
    }
    expect(refused).toBe(10);
    // Nothing was refused before the bound was really full.
    expect(accepted * diff.length).toBeGreaterThanOrEqual(boundBytes);
    expect(
      await counter(registry, 'persist_pubsub_client_pushes_dropped_total', {
        reason: 'queue_full',
      }),
    ).toBe(refused);

    proxy.heal();
    await until(() => w.push(S, 5000n, diff), 10_000);
    expect(w.status.state).toBe('connected');
  }, 30_000);

  it('a write window holds pushes that follow a write closely, then sends them in one write', async () => {
    const { address, reader } = await brokerWithReader();
    // The window's timer on a fake clock: it ends only when the test moves time.
    const clock = createFakeClock();
    const flags = createFlags({ persist_pubsub_client_write_window_us: 5000 });
    const transport = createGrpcTransport({ url: `grpc://${address}`, clock, flags });
    const conn = await transport.connect({
      signal: AbortSignal.timeout(10_000),
      onMessage: () => {},
      onClose: () => {},
    });
    cleanup.push(() => conn.close());
    const diff = new Uint8Array(100).fill(3);
    // Leading edge: the connection was idle, so the first push goes out at once.
    const first = conn.push(S, 1n, diff, 0);
    expect(first).toBeGreaterThan(0);
    await reader.waitFor(1, 10_000);
    // Within the window since that write: held, across turns, until the window ends.
    const second = conn.push(S, 2n, diff, 0);
    await new Promise((r) => setImmediate(r));
    const third = conn.push(S, 3n, diff, 0);
    await new Promise((r) => setImmediate(r));
    expect(conn.bufferedBytes()).toBeGreaterThanOrEqual(Number(second) + Number(third));
    await clock.advance(5);
    const got = await reader.waitFor(3, 10_000);
    expect(
      got.map((m) => (m.message.case === 'pushDiff' ? Number(m.message.value.seqno) : -1)),
    ).toEqual([1, 2, 3]);
    // Turned off live: the next push goes out at once again.
    flags.set({ persist_pubsub_client_write_window_us: 0 });
    conn.push(S, 4n, diff, 0);
    expect((await reader.waitFor(4, 10_000)).length).toBe(4);
  }, 30_000);

  it('keepalive finds a broker behind a half-open connection, and the client reconnects', async () => {
    const broker = await startBroker();
    const proxy = await createFaultProxy(broker.address.port);
    cleanup.push(() => proxy.close());
    // Keepalive, backoff and attempt timers on a fake clock: no real sleeps, only real I/O.
    const clock = createFakeClock();
    const c = createPubSubClient(
      createGrpcTransport({
        url: proxy.url,
        keepaliveTimeMs: 1000,
        keepaliveTimeoutMs: 500,
        clock,
      }),
      {
        clock,
        flags: createFlags({
          persist_pubsub_reconnect_backoff_ms: 20,
          persist_pubsub_connect_max_backoff_ms: 50,
        }),
      },
    );
    cleanup.push(() => c.close());
    c.subscribe(S);
    await until(() => c.status.state === 'connected', 10_000);
    // A ping answered in time keeps the connection.
    await clock.advance(1000);
    // Real time for the ping to cross loopback and its ack to come back (generous: a busy machine).
    await new Promise((r) => setTimeout(r, 250));
    await clock.advance(499);
    expect(c.status.state).toBe('connected');
    await clock.advance(1);
    expect(c.status.state).toBe('connected');

    proxy.halfOpen();
    const changes = c.statusChanges()[Symbol.asyncIterator]();
    await clock.advance(500); // the next ping leaves (due 1000 after the last ack)...
    await new Promise((r) => setTimeout(r, 50));
    await clock.advance(499); // ...and nothing answers it
    expect(c.status.state).toBe('connected');
    await clock.advance(1);
    await clock.advance(500);
    let st = (await changes.next()).value;
    while (st?.state === 'connected') st = (await changes.next()).value;
    expect(st).toMatchObject({
      state: 'backoff',
      error: expect.stringMatching(/keepalive ping unanswered after 500 ms/),
    });
    for (let i = 0; i < 200 && c.status.state !== 'connected'; i++) {
      await clock.advance(25);
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(c.status).toMatchObject({ state: 'connected', connections: 2 });
  });
});
