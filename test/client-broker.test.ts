/**
 * The reference client scenarios against the real broker on loopback (gRPC), plus the
 * same-process delegate: subscribe before the broker exists; refcounted tokens; no echo to
 * the sender; broker restart with resubscribe and a subscription made during the outage; a
 * graceful restart (GOAWAY) where both clients move to the new broker before the old one ends.
 */
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Broker } from '../src/broker/index.js';
import { createBroker } from '../src/broker/index.js';
import {
  createBrokerTransport,
  createFlags,
  createGrpcPubSubClient,
  createPubSubClient,
  type PubSubClient,
  type PubSubEvent,
} from '../src/client/index.js';
import { until } from './support/wait.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a !== null ? resolve(a.port) : reject(new Error())));
    });
  });
}

async function startBroker(port = 0): Promise<Broker> {
  const broker = createBroker({ listen: { host: '127.0.0.1', port } });
  await broker.start();
  cleanup.push(() => broker.destroy());
  return broker;
}

/** Collects every event of a client into an array. */
function collect(client: PubSubClient): PubSubEvent[] {
  const out: PubSubEvent[] = [];
  void (async () => {
    for await (const ev of client.events()) out.push(ev);
  })();
  return out;
}

const diffs = (evs: PubSubEvent[], shard: string) =>
  evs.flatMap((e) => (e.kind === 'diff' && e.shardId === shard ? [e.seqno] : []));

const shard = (n: number) => `s00000000-0000-0000-0000-${String(n).padStart(12, '0')}`;

function fastFlags() {
  return createFlags({
    persist_pubsub_reconnect_backoff_ms: 20,
    persist_pubsub_connect_max_backoff_ms: 50,
    persist_pubsub_connect_attempt_timeout_ms: 1000,
  });
}

function grpcClient(port: number, callerId: string): PubSubClient {
  const c = createGrpcPubSubClient({
    url: `grpc://127.0.0.1:${port}`,
    callerId,
    flags: fastFlags(),
    initialConnectBackoffMs: 10,
  });
  cleanup.push(() => c.close());
  return c;
}

const subscribers = (broker: Broker, shardId: string): number =>
  broker.listShards({ pageSize: 1000 }).items.find((s) => s.shardId === shardId)?.subscribers ?? 0;

describe('pubsub client against the broker (gRPC)', () => {
  it('a subscription made before the broker exists takes effect once it starts', async () => {
    const port = await freePort();
    const reader = grpcClient(port, 'reader');
    const writer = grpcClient(port, 'writer');
    const S = shard(1);
    reader.subscribe(S);
    const got = collect(reader);
    await until(() => reader.status.state === 'backoff');
    const broker = await startBroker(port);
    await until(() => subscribers(broker, S) === 1 && writer.status.state === 'connected');
    writer.push(S, 1n, new Uint8Array([1]));
    await until(() => diffs(got, S).length === 1);
    expect(diffs(got, S)).toEqual([1n]);
  });

  it('refcounts tokens, unsubscribes on the last release, and never echoes to the sender', async () => {
    const broker = await startBroker();
    const a = grpcClient(broker.address.port, 'a');
    const b = grpcClient(broker.address.port, 'b');
    const S = shard(2);
    const gotA = collect(a);
    const gotB = collect(b);
    const t1 = a.subscribe(S);
    const t2 = a.subscribe(S);
    b.subscribe(S);
    await until(() => subscribers(broker, S) === 2);
    expect(
      broker
        .listConnections()
        .items.map((c) => c.subscriptions)
        .sort(),
    ).toEqual([1, 1]);
    a.push(S, 1n, new Uint8Array([1]));
    b.push(S, 2n, new Uint8Array([2]));
    await until(() => diffs(gotA, S).length === 1 && diffs(gotB, S).length === 1);
    expect(diffs(gotA, S)).toEqual([2n]);
    expect(diffs(gotB, S)).toEqual([1n]);
    t1.release();
    await new Promise((r) => setTimeout(r, 50));
    expect(subscribers(broker, S)).toBe(2);
    t2[Symbol.dispose]();
    await until(() => subscribers(broker, S) === 1);
    b.push(S, 3n, new Uint8Array([3]));
    // A probe on another shard, pushed after, proves a had the chance to receive seqno 3.
    const P = shard(3);
    a.subscribe(P);
    await until(() => subscribers(broker, P) === 1);
    b.push(P, 1n, new Uint8Array());
    await until(() => diffs(gotA, P).length === 1);
    expect(diffs(gotA, S)).toEqual([2n]);
  });

  it('broker restart: reconnects, resubscribes, traffic resumes both ways, outage subscriptions honoured', async () => {
    let broker = await startBroker();
    const port = broker.address.port;
    const a = grpcClient(port, 'a');
    const b = grpcClient(port, 'b');
    const S = shard(4);
    const T = shard(5);
    const gotA = collect(a);
    const gotB = collect(b);
    a.subscribe(S);
    b.subscribe(S);
    await until(() => subscribers(broker, S) === 2);
    a.push(S, 1n, new Uint8Array());
    await until(() => diffs(gotB, S).length === 1);

    broker.destroy();
    await until(() => a.status.state !== 'connected' && b.status.state !== 'connected');
    expect(a.push(S, 2n, new Uint8Array())).toBe(false);
    b.subscribe(T); // made during the outage
    broker = await startBroker(port);
    await until(() => subscribers(broker, S) === 2 && subscribers(broker, T) === 1);
    // Both sides learnt of the reconnect (to catch up from Consensus).
    expect(gotA.filter((e) => e.kind === 'resync' && e.reconnect)).toHaveLength(1);
    expect(gotB.find((e) => e.kind === 'resync' && e.reconnect)).toMatchObject({
      shardIds: [S, T],
    });
    a.push(S, 3n, new Uint8Array());
    b.push(S, 4n, new Uint8Array());
    a.push(T, 1n, new Uint8Array());
    await until(() => diffs(gotB, S).length === 2 && diffs(gotA, S).length === 1);
    await until(() => diffs(gotB, T).length === 1);
    expect(diffs(gotB, S)).toEqual([1n, 3n]);
    expect(diffs(gotA, S)).toEqual([4n]);
  });
});

describe('graceful broker restart (GOAWAY, make-before-break)', () => {
  it('moves both clients to the new broker on the same port before the old one ends them: no diff lost, no resync', async () => {
    const old = await startBroker();
    const port = old.address.port;
    const client = (callerId: string): PubSubClient => {
      const c = createGrpcPubSubClient({
        url: `grpc://127.0.0.1:${port}`,
        callerId,
        flags: createFlags({
          // Were the GOAWAY ignored, the first reconnect would come after a minute.
          persist_pubsub_reconnect_backoff_ms: 60_000,
          persist_pubsub_connect_max_backoff_ms: 50,
          persist_pubsub_goaway_reconnect_jitter_ms: 20,
          persist_pubsub_goaway_overlap_ms: 300,
        }),
        initialConnectBackoffMs: 10,
      });
      cleanup.push(() => c.close());
      return c;
    };
    const writer = client('writer');
    const reader = client('reader');
    const S = shard(9);
    const got = collect(reader);
    reader.subscribe(S, { resumeAfterSeqno: () => diffs(got, S).at(-1) });
    writer.subscribe(S);
    await until(() => subscribers(old, S) === 2);
    let seqno = 0n;
    const pushSome = (n: number) => {
      for (let i = 0; i < n; i++) expect(writer.push(S, ++seqno, new Uint8Array([1]))).toBe(true);
    };
    pushSome(5);
    await until(() => diffs(got, S).length === 5);

    // The drain: the old broker stops listening and sends GOAWAY, but serves its streams on.
    const closing = old.close({ deadlineMs: 60_000 });
    const next = await startBroker(port);
    // Steady pushes while both clients move: every one reaches the reader on one broker or both.
    while (
      reader.status.state !== 'connected' ||
      writer.status.state !== 'connected' ||
      subscribers(next, S) < 2
    ) {
      pushSome(1);
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(reader.status).toMatchObject({ state: 'connected', reason: 'goaway', connections: 2 });
    pushSome(5);
    // The old broker's drain ends once both clients have left it (the overlap), not at 60 s.
    await closing;
    pushSome(5);
    await until(() => diffs(got, S).length >= Number(seqno));
    expect(diffs(got, S)).toEqual(Array.from({ length: Number(seqno) }, (_, i) => BigInt(i + 1)));
    // No catch-up was asked for: no resync after the first, no gap.
    expect(got.filter((e) => e.kind === 'resync')).toHaveLength(1);
    expect(got.filter((e) => e.kind === 'gap')).toEqual([]);
  });
});

describe('sender channel bound', () => {
  it('sends a burst of pushes made within one turn whole (a writer committing many shards)', async () => {
    const broker = await startBroker();
    const got = new Set<string>();
    const sink = broker.connectInProcess({
      callerId: 'sink',
      onMessage: (m) => {
        if (m.kind === 'push') got.add(m.shardId);
      },
    });
    cleanup.push(() => sink.close());
    const N = 500;
    const shards = Array.from({ length: N }, (_, i) => shard(10_000 + i));
    for (const s of shards) sink.subscribe(s);
    const writer = grpcClient(broker.address.port, 'burst-writer');
    await until(() => writer.status.state === 'connected');
    // Far more than the sender channel (25): the bound is for a stream that stays behind, not
    // for a burst the transport takes within one event-loop turn.
    let accepted = 0;
    for (const [i, s] of shards.entries()) {
      if (writer.push(s, 1n, new Uint8Array(256).fill(i % 256))) accepted++;
    }
    expect(accepted).toBe(N);
    await until(() => got.size === N);
  });
});

describe('resume after an outage', () => {
  it('re-subscribes with the last seqno seen, and the broker replays what was missed', async () => {
    const broker = await startBroker();
    const flags = fastFlags();
    const reader = createGrpcPubSubClient({
      url: `grpc://127.0.0.1:${broker.address.port}`,
      callerId: 'reader',
      flags,
    });
    cleanup.push(() => reader.close());
    const writer = grpcClient(broker.address.port, 'writer');
    const S = shard(8);
    const got = collect(reader);
    let last: bigint | undefined;
    reader.subscribe(S, { resumeAfterSeqno: () => last });
    await until(() => subscribers(broker, S) === 1 && writer.status.state === 'connected');
    for (const n of [1n, 2n, 3n]) writer.push(S, n, new Uint8Array([Number(n)]));
    await until(() => diffs(got, S).length === 3);
    last = 3n;
    flags.set({ persist_pubsub_client_enabled: false });
    await until(() => subscribers(broker, S) === 0);
    // The broker's ring keeps these for the shard even with no subscriber.
    writer.subscribe(S);
    await until(() => subscribers(broker, S) === 1);
    for (const n of [4n, 5n]) writer.push(S, n, new Uint8Array([Number(n)]));
    await until(() => broker.listShards().items.find((x) => x.shardId === S)?.lastSeqno === '5');
    flags.set({ persist_pubsub_client_enabled: true });
    await until(() => diffs(got, S).length === 5);
    expect(diffs(got, S)).toEqual([1n, 2n, 3n, 4n, 5n]);
  });
});

describe('same-process delegate', () => {
  it('talks to the broker in-process, interoperates with gRPC peers, and switches by flag', async () => {
    const broker = await startBroker();
    const flags = fastFlags();
    const local = createPubSubClient(createBrokerTransport(broker, { flags, callerId: 'local' }), {
      flags,
      reconnectOn: (n, p) =>
        n.persist_pubsub_same_process_delegate_enabled !==
        p.persist_pubsub_same_process_delegate_enabled,
    });
    cleanup.push(() => local.close());
    const remote = grpcClient(broker.address.port, 'remote');
    const S = shard(6);
    const gotLocal = collect(local);
    const gotRemote = collect(remote);
    local.subscribe(S);
    remote.subscribe(S);
    await until(() => subscribers(broker, S) === 2);
    expect(local.transport).toBe('in-process');
    const diff = new Uint8Array([9, 9]);
    local.push(S, 1n, diff, 1234);
    remote.push(S, 2n, new Uint8Array([7]));
    await until(() => diffs(gotLocal, S).length === 1 && diffs(gotRemote, S).length === 1);
    expect(gotRemote.find((e) => e.kind === 'diff')).toMatchObject({
      seqno: 1n,
      originTimestampMs: 1234,
    });
    expect(gotLocal.find((e) => e.kind === 'diff')).toMatchObject({ seqno: 2n });
    const kinds = () =>
      broker
        .listConnections()
        .items.map((c) => `${c.callerId}:${c.remoteAddress === 'in-process' ? 'local' : 'net'}`)
        .sort();
    expect(kinds()).toEqual(['local:local', 'remote:net']);

    flags.set({ persist_pubsub_same_process_delegate_enabled: false });
    await until(() => local.status.state === 'connected' && local.transport === 'grpc');
    await until(() => subscribers(broker, S) === 2 && kinds().join() === 'local:net,remote:net');
    remote.push(S, 3n, new Uint8Array());
    await until(() => diffs(gotLocal, S).length === 2);
    expect(diffs(gotLocal, S)).toEqual([2n, 3n]);
  });
});

describe('keepalive', () => {
  it('finds a broker that went silent (no FIN, no RST) and reconnects when it answers again', async () => {
    const broker = await startBroker();
    // A TCP proxy that can stop forwarding in both directions while keeping sockets open.
    let blackhole = false;
    const pairs: Socket[] = [];
    const proxy = createServer((inbound) => {
      const outbound = connect(broker.address.port, '127.0.0.1');
      pairs.push(inbound, outbound);
      inbound.on('data', (b) => {
        if (!blackhole) outbound.write(b);
      });
      outbound.on('data', (b) => {
        if (!blackhole) inbound.write(b);
      });
      inbound.on('error', () => {});
      outbound.on('error', () => {});
      inbound.on('close', () => outbound.destroy());
      outbound.on('close', () => inbound.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    cleanup.push(
      () =>
        new Promise<void>((r) => {
          for (const s of pairs) s.destroy();
          proxy.close(() => r());
        }),
    );
    const flags = fastFlags();
    const client = createGrpcPubSubClient({
      url: `grpc://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
      flags,
      keepaliveTimeMs: 100,
      keepaliveTimeoutMs: 100,
    });
    cleanup.push(() => client.close());
    const S = shard(7);
    client.subscribe(S);
    await until(() => client.status.state === 'connected' && subscribers(broker, S) === 1);
    const connectionsBefore = (client.status as { connections: number }).connections;
    blackhole = true;
    await until(() => client.status.state !== 'connected', 3000);
    blackhole = false;
    for (const s of pairs) s.destroy(); // the silent connection is dead either way
    await until(
      () =>
        client.status.state === 'connected' &&
        (client.status as { connections: number }).connections === connectionsBefore + 1,
      3000,
    );
  });
});
