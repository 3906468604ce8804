/**
 * Brokers bridged by NATS, against real nats-servers: gRPC-only clients on two brokers see each
 * other's diffs exactly once (no echo, no loop, no doubles), NATS-direct clients on the same
 * prefix join in, the bridge follows local subscriptions, and a nats-server restarted
 * mid-traffic (a private one, never the shared server) leaves readers correct and caught up.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Broker,
  createBroker,
  createNatsBridge,
  type NatsBridge,
} from '../src/broker/index.js';
import {
  createFlags,
  createGrpcPubSubClient,
  createNatsTransport,
  createPersistClient,
  createPubSubClient,
  type PersistClientOptions,
  type PubSubClient,
} from '../src/client/index.js';
import { createMemoryConsensus } from '../src/consensus/index.js';
import { collect, ownNatsServer, seqnos, uniquePrefix, until } from './nats-support.js';
import { counterModel } from './support/counter-model.js';
import { requireService, SERVICE_URLS } from './support/services.js';

const natsOk = await requireService('nats');

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const fast = {
  persist_pubsub_reconnect_backoff_ms: 20,
  persist_pubsub_connect_max_backoff_ms: 50,
  persist_pubsub_connect_attempt_timeout_ms: 2000,
  // The 50 pushes below leave in one write and arrive together: room for all of them in each
  // reader's event queue (25 by default; more would become client_lagged gaps, not diffs).
  persist_pubsub_client_receiver_channel_size: 256,
};

async function bridgedBroker(
  url: string,
  prefix: string,
): Promise<{ broker: Broker; bridge: NatsBridge }> {
  const bridge = createNatsBridge({ url, subjectPrefix: prefix, reconnectTimeWaitMs: 100 });
  const broker = createBroker({
    listen: { host: '127.0.0.1', port: 0 },
    observer: bridge.observer,
  });
  await broker.start();
  cleanup.push(() => broker.destroy());
  cleanup.push(() => bridge.close());
  await bridge.start(broker, { signal: AbortSignal.timeout(10_000) });
  return { broker, bridge };
}

function grpcClient(broker: Broker, callerId: string): PubSubClient {
  const c = createGrpcPubSubClient({
    url: `grpc://127.0.0.1:${broker.address.port}`,
    callerId,
    flags: createFlags(fast),
    initialConnectBackoffMs: 10,
  });
  cleanup.push(() => c.close());
  return c;
}

/**
 * A private nats-server (never the shared one: the tests stop it), brokers A and B bridged
 * through it on a fresh subject prefix, and persist clients over one Consensus: a writer on A,
 * a reader on B (`callerIds`: named `writer` and `reader`).
 */
async function writerAndReaderAcrossBridge(
  label: string,
  config: NonNullable<PersistClientOptions['config']>,
  callerIds = false,
) {
  const server = await ownNatsServer();
  cleanup.push(() => server.kill());
  await server.start();
  const prefix = uniquePrefix(label);
  const A = await bridgedBroker(server.url, prefix);
  const B = await bridgedBroker(server.url, prefix);
  const store = createMemoryConsensus();
  const writer = await createPersistClient({
    consensus: store,
    pubsub: `grpc://127.0.0.1:${A.broker.address.port}`,
    config,
    ...(callerIds ? { callerId: 'writer' } : {}),
  });
  const reader = await createPersistClient({
    consensus: store,
    pubsub: `grpc://127.0.0.1:${B.broker.address.port}`,
    config,
    ...(callerIds ? { callerId: 'reader' } : {}),
  });
  cleanup.push(
    () => writer.close(),
    () => reader.close(),
  );
  return { server, A, B, writer, reader };
}

/** Pushes probe diffs (seqno 0) until `got` has one: the path writer → reader is live. */
async function probe(writer: PubSubClient, got: ReturnType<typeof collect>, shardId: string) {
  const deadline = Date.now() + 10_000;
  while (!seqnos(got, shardId).includes(0n)) {
    if (Date.now() > deadline) throw new Error(`probe on ${shardId} never arrived`);
    writer.push(shardId, 0n, new Uint8Array());
    await new Promise((r) => setTimeout(r, 20));
  }
}
const real = (xs: bigint[]) => xs.filter((x) => x !== 0n);
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => BigInt(a + i));

describe('NATS bridge: constructor', () => {
  it('validates its options, naming the field', () => {
    expect(() => createNatsBridge({ url: 'grpc://x:1' })).toThrow(/url/);
    expect(() => createNatsBridge({ url: 'nats://x:1', subjectPrefix: 'a.>' })).toThrow(
      /subjectPrefix/,
    );
    expect(() => createNatsBridge({ url: 'nats://x:1', brokerId: 'a b' })).toThrow(/brokerId/);
    expect(() => createNatsBridge({ url: 'nats://x:1', reconnectTimeWaitMs: 0 })).toThrow(
      /reconnectTimeWaitMs/,
    );
    expect(createNatsBridge({ url: 'nats://x:1' }).state).toBe('idle');
  });
});

describe.skipIf(!natsOk)('brokers bridged by NATS', () => {
  it('a writer on one broker reaches readers on the other exactly once, with no echo; NATS-direct clients join', async () => {
    const prefix = uniquePrefix('bridge');
    const A = await bridgedBroker(SERVICE_URLS.nats, prefix);
    const B = await bridgedBroker(SERVICE_URLS.nats, prefix);
    const S = `s${crypto.randomUUID()}`;
    const w = grpcClient(A.broker, 'writer-a');
    const rA = grpcClient(A.broker, 'reader-a');
    const rB = grpcClient(B.broker, 'reader-b');
    const direct = createPubSubClient(
      createNatsTransport({ url: SERVICE_URLS.nats, subjectPrefix: prefix, callerId: 'direct' }),
      { flags: createFlags(fast) },
    );
    cleanup.push(() => direct.close());
    const got = { w: collect(w), rA: collect(rA), rB: collect(rB), direct: collect(direct) };
    for (const c of [w, rA, rB, direct]) c.subscribe(S);
    await until(() => B.bridge.subscribedShards().includes(S));
    await until(() => A.bridge.subscribedShards().includes(S));
    await probe(w, got.rB, S);
    await probe(w, got.direct, S);
    await probe(rB, got.w, S);
    await probe(direct, got.w, S);

    // One turn: the sender coalesces them into one write and drops none (byte-bounded).
    for (let i = 1; i <= 50; i++) expect(w.push(S, BigInt(i), new Uint8Array([i]))).toBe(true);
    expect(rB.push(S, 100n, new Uint8Array([100]))).toBe(true);
    expect(direct.push(S, 200n, new Uint8Array([200]))).toBe(true);
    await until(() => real(seqnos(got.rB, S)).length >= 51, 10_000, 'rB');
    await until(() => real(seqnos(got.w, S)).length >= 2, 10_000, 'w');
    await until(() => real(seqnos(got.direct, S)).length >= 51, 10_000, 'direct');
    await until(() => real(seqnos(got.rA, S)).length >= 52, 10_000, 'rA');
    // Later markers, one per publisher, prove nothing more (an echo or a double) was in flight.
    const M = 1000n;
    for (const c of [w, rB, direct]) c.push(S, M, new Uint8Array());
    await until(() => seqnos(got.rA, S).filter((x) => x === M).length === 3, 10_000, 'markers');
    await new Promise((r) => setTimeout(r, 100));
    const final = (xs: bigint[]) => real(xs).filter((x) => x !== M);
    // Reader on the other broker: all 50 of the writer's, in order, once; plus the others'.
    expect(final(seqnos(got.rB, S)).filter((x) => x <= 50n)).toEqual(range(1, 50));
    expect(final(seqnos(got.rB, S)).sort()).toEqual([...range(1, 50), 200n].sort());
    // Local reader next to the writer: once each (locally, not again through NATS).
    expect(final(seqnos(got.rA, S)).sort()).toEqual([...range(1, 50), 100n, 200n].sort());
    // The writer never sees its own; the direct client sees both brokers' clients.
    expect(final(seqnos(got.w, S)).sort()).toEqual([100n, 200n]);
    expect(final(seqnos(got.direct, S)).sort()).toEqual([...range(1, 50), 100n].sort());
    for (const g of Object.values(got)) {
      expect(seqnos(g, S).filter((x) => x === M)).toHaveLength(g === got.rA ? 3 : 2);
    }
    // Received diffs keep the writer's bytes.
    const ten = got.rB.find((e) => e.kind === 'diff' && e.seqno === 10n);
    expect(ten?.kind === 'diff' && [...ten.diff]).toEqual([10]);

    // The bridge follows local subscriptions: B's last local subscriber leaves, B leaves NATS.
    await rB.close();
    await until(() => !B.bridge.subscribedShards().includes(S));
    expect(A.bridge.subscribedShards()).toContain(S);
    // Metrics: A published its clients' 51 pushes + probes, got B's and direct's.
    const text = await A.broker.registry.metrics();
    expect(text).toMatch(/persist_pubsub_bridge_connected 1/);
    expect(text).toMatch(/persist_pubsub_bridge_messages_total\{direction="out"\} \d+/);
  });

  it('nats-server restarted mid-traffic: bridges reconnect, readers stay correct and catch up', async () => {
    const S = `s${crypto.randomUUID()}`;
    const config = {
      ...fast,
      // A slow first poll: a reader that sees a commit sooner got it through pubsub.
      persist_next_listen_batch_retryer_fixed_sleep_ms: 3000,
    };
    const { server, A, B, writer, reader } = await writerAndReaderAcrossBridge(
      'restart',
      config,
      true,
    );
    // A raw gRPC subscriber on B counts deliveries: no seqno may arrive twice.
    const tap = grpcClient(B.broker, 'tap');
    const tapped = collect(tap);
    tap.subscribe(S);
    const wh = await writer.openShard(S, counterModel);
    const rh = await reader.openShard(S, counterModel);
    cleanup.push(
      () => wh.close(),
      () => rh.close(),
    );
    await until(() => B.bridge.subscribedShards().includes(S));

    let stop = false;
    let last = 0n;
    let commits = 0;
    const writing = (async () => {
      while (!stop) {
        last = (await wh.update((s) => s + 1)).seqno;
        commits++;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await until(() => real(seqnos(tapped, S)).length >= 20, 10_000, 'traffic before');
    await server.kill();
    await until(() => A.bridge.state === 'reconnecting' && B.bridge.state === 'reconnecting');
    const beforeRestart = commits;
    await until(() => commits >= beforeRestart + 20, 10_000, 'commits during outage');
    await server.start();
    await until(() => A.bridge.state === 'connected' && B.bridge.state === 'connected');
    const afterRestart = last;
    await until(
      () => real(seqnos(tapped, S)).some((x) => x > afterRestart + 5n),
      10_000,
      'traffic after restart',
    );
    stop = true;
    await writing;

    // The reader reaches the writer's final state; the last commits came through pubsub.
    const seen = await rh.waitForSeqno(last, { signal: AbortSignal.timeout(5000) });
    expect(seen.state).toBe(commits);
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) {
      const res = await wh.update((s) => s + 1);
      await rh.waitForSeqno(res.seqno, { signal: AbortSignal.timeout(2000) });
    }
    expect(Date.now() - t0).toBeLessThan(2000);
    const got = real(seqnos(tapped, S));
    expect(new Set(got).size).toBe(got.length);
  });

  it('after a NATS outage the bridge sends gap notices: a reader catches up at once, not at its poll', async () => {
    const S = `s${crypto.randomUUID()}`;
    // Polls far apart: a reader that catches up within seconds was told to.
    const config = {
      ...fast,
      persist_next_listen_batch_retryer_fixed_sleep_ms: 30_000,
      persist_next_listen_batch_retryer_initial_backoff_ms: 30_000,
      persist_next_listen_batch_retryer_clamp_ms: 30_000,
    };
    const { server, A, B, writer, reader } = await writerAndReaderAcrossBridge('gap', config);
    const wh = await writer.openShard(S, counterModel);
    const rh = await reader.openShard(S, counterModel);
    cleanup.push(
      () => wh.close(),
      () => rh.close(),
    );
    await until(() => B.bridge.subscribedShards().includes(S) && A.bridge.state === 'connected');
    // Through pubsub first (commits until one reaches the reader fast).
    for (let ok = false; !ok; ) {
      const res = await wh.update((s) => s + 1);
      ok = await rh
        .waitForSeqno(res.seqno, { signal: AbortSignal.timeout(300) })
        .then(() => true)
        .catch(() => false);
    }
    await server.kill();
    await until(() => B.bridge.state === 'reconnecting');
    // Committed during the outage and never published: only Consensus has it.
    writer.flags.set({ persist_pubsub_push_diff_enabled: false });
    const during = await wh.update((s) => s + 100);
    await server.start();
    await until(() => B.bridge.state === 'connected');
    const seen = await rh.waitForSeqno(during.seqno, { signal: AbortSignal.timeout(5000) });
    expect(seen.state).toBe(wh.state);
    expect(await B.broker.registry.metrics()).toMatch(/persist_pubsub_bridge_reconnects_total 1/);
  });

  it('closes promptly with NATS gone, and a start waiting for an unreachable server ends on close', async () => {
    const server = await ownNatsServer();
    cleanup.push(() => server.kill());
    await server.start();
    const A = await bridgedBroker(server.url, uniquePrefix('close'));
    await server.kill();
    await until(() => A.bridge.state === 'reconnecting');
    const t0 = Date.now();
    await A.bridge.close();
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(A.bridge.state).toBe('closed');

    const bridge = createNatsBridge({ url: server.url, reconnectTimeWaitMs: 50 });
    const broker = createBroker({
      listen: { host: '127.0.0.1', port: 0 },
      observer: bridge.observer,
    });
    await broker.start();
    cleanup.push(() => broker.destroy());
    const starting = bridge.start(broker);
    await until(() => bridge.state === 'connecting');
    await new Promise((r) => setTimeout(r, 200));
    await bridge.close();
    await expect(starting).rejects.toMatchObject({ code: 'unavailable' });
    // The broker itself never depended on NATS.
    expect(broker.isReady()).toBe(true);

    // A bridge started before its server exists connects once it does.
    const late = createNatsBridge({ url: server.url, reconnectTimeWaitMs: 50 });
    const broker2 = createBroker({
      listen: { host: '127.0.0.1', port: 0 },
      observer: late.observer,
    });
    await broker2.start();
    cleanup.push(() => broker2.destroy());
    cleanup.push(() => late.close());
    const lateStart = late.start(broker2);
    await new Promise((r) => setTimeout(r, 200));
    expect(late.state).toBe('connecting');
    await server.start();
    await lateStart;
    expect(late.state).toBe('connected');
  });
});
