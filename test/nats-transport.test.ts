/**
 * The NATS transport against real nats-servers: the same client scenarios as the gRPC path
 * (`client-broker.test.ts`): subscribe before the server exists, refcounted tokens, no echo,
 * server restart with resubscription and catch-up; plus the envelope bytes on the wire and
 * `createPersistClient({ pubsub: 'nats://…' })` end to end. The shared server on 4222 carries
 * the suites that need no restart (unique subject prefix per test); restarts use a private
 * nats-server on a free port.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createFlags,
  createNatsTransport,
  createPersistClient,
  createPubSubClient,
  type PubSubClient,
} from '../src/client/index.js';
import { createMemoryConsensus } from '../src/consensus/index.js';
import {
  ProtoPubSubMessageSchema,
  ProtoPushDiffSchema,
} from '../src/gen/mz_persist_client/internal/service/pubsub_pb.js';
import { shardSubject } from '../src/protocol/index.js';
import {
  collect,
  freePort,
  type OwnNatsServer,
  ownNatsServer,
  seqnos,
  uniquePrefix,
  until,
} from './nats-support.js';
import { requireService, SERVICE_URLS } from './support/services.js';
import { openWriterAndReader } from './support/writer-reader.js';

const natsOk = await requireService('nats');
const SHARED = SERVICE_URLS.nats;

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const shard = (n: number) => `s00000000-0000-0000-0000-${String(n).padStart(12, '0')}`;

function fastFlags() {
  return createFlags({
    persist_pubsub_reconnect_backoff_ms: 20,
    persist_pubsub_connect_max_backoff_ms: 50,
    persist_pubsub_connect_attempt_timeout_ms: 2000,
  });
}

function natsClient(url: string, prefix: string, callerId: string): PubSubClient {
  const c = createPubSubClient(createNatsTransport({ url, subjectPrefix: prefix, callerId }), {
    flags: fastFlags(),
    initialConnectBackoffMs: 10,
  });
  cleanup.push(() => c.close());
  return c;
}

async function rawNats(url: string): Promise<NatsConnection> {
  const nc = await connect({ servers: url });
  cleanup.push(() => nc.close());
  return nc;
}

/**
 * NATS gives no "subscription is live" acknowledgement to a third party: the writer pushes a
 * probe (seqno 0) on `shardId` until the reader has one, after which, NATS keeping each
 * publisher's order, everything the writer pushes reaches the reader.
 */
async function probe(writer: PubSubClient, got: ReturnType<typeof collect>, shardId: string) {
  const deadline = Date.now() + 10_000;
  while (!seqnos(got, shardId).includes(0n)) {
    if (Date.now() > deadline) throw new Error(`probe on ${shardId} never arrived`);
    writer.push(shardId, 0n, new Uint8Array());
    await new Promise((r) => setTimeout(r, 20));
  }
}
const real = (xs: bigint[]) => xs.filter((x) => x !== 0n);

describe('NATS transport: constructor', () => {
  it('validates its options, naming the field', () => {
    const field = (name: string) =>
      expect.objectContaining({ code: 'invalid_argument', field: name });
    expect(() => createNatsTransport({ url: 'grpc://x:1' })).toThrow(field('url'));
    expect(() => createNatsTransport({ url: 'nats://x:1/path' })).toThrow(field('url'));
    expect(() => createNatsTransport({ url: 'nats://x:1', subjectPrefix: 'a.*' })).toThrow(
      field('subjectPrefix'),
    );
    expect(() => createNatsTransport({ url: 'nats://x:1', connectTimeoutMs: 0 })).toThrow(
      field('connectTimeoutMs'),
    );
    expect(() => createNatsTransport({ url: 'nats://x:1', callerId: 'é' })).toThrow(
      field('callerId'),
    );
    expect(createNatsTransport({ url: 'nats://a:1,nats://b:2' }).kind).toBe('nats');
  });
});

describe.skipIf(!natsOk)('NATS transport against nats-server', () => {
  let own: OwnNatsServer | undefined;
  afterEach(async () => {
    await own?.kill();
    own = undefined;
  });

  it('a subscription made before the server exists takes effect once it starts', async () => {
    own = await ownNatsServer();
    const prefix = uniquePrefix('early');
    const reader = natsClient(own.url, prefix, 'reader');
    const writer = natsClient(own.url, prefix, 'writer');
    const S = shard(1);
    reader.subscribe(S);
    const got = collect(reader);
    await until(() => reader.status.state === 'backoff');
    expect(writer.push(S, 1n, new Uint8Array([1]))).toBe(false);
    await own.start();
    await until(() => reader.status.state === 'connected' && writer.status.state === 'connected');
    expect(got.filter((e) => e.kind === 'resync')).toEqual([
      { kind: 'resync', shardIds: [S], reconnect: false },
    ]);
    await probe(writer, got, S);
    const t0 = Date.now();
    expect(writer.push(S, 1n, new Uint8Array([7, 8]), 1_700_000_000_123)).toBe(true);
    await until(() => real(seqnos(got, S)).length === 1);
    const ev = got.find((e) => e.kind === 'diff' && e.seqno === 1n);
    if (ev?.kind !== 'diff') throw new Error('no diff');
    expect(ev.shardId).toBe(S);
    expect([...ev.diff]).toEqual([7, 8]);
    expect(ev.originTimestampMs).toBeCloseTo(1_700_000_000_123, 3);
    expect(ev.brokerTimestampMs).toBeGreaterThanOrEqual(t0 - 1000);
  });

  it('refcounts tokens, unsubscribes on the last release, and never echoes to the sender', async () => {
    const prefix = uniquePrefix('refcount');
    const a = natsClient(SHARED, prefix, 'a');
    const b = natsClient(SHARED, prefix, 'b');
    const S = shard(2);
    const P = shard(3);
    const gotA = collect(a);
    const gotB = collect(b);
    const t1 = a.subscribe(S);
    const t2 = a.subscribe(S);
    b.subscribe(S);
    expect(a.subscribedShards()).toEqual([S]);
    await until(() => a.status.state === 'connected' && b.status.state === 'connected');
    await probe(b, gotA, S);
    await probe(a, gotB, S);
    a.push(S, 1n, new Uint8Array([1]));
    b.push(S, 2n, new Uint8Array([2]));
    await until(() => real(seqnos(gotA, S)).length === 1 && real(seqnos(gotB, S)).length === 1);
    t1.release();
    t1.release(); // idempotent
    expect(a.subscribedShards()).toEqual([S]);
    b.push(S, 3n, new Uint8Array([3]));
    await until(() => real(seqnos(gotA, S)).length === 2);
    t2[Symbol.dispose]();
    expect(a.subscribedShards()).toEqual([]);
    b.push(S, 4n, new Uint8Array([4]));
    // A probe on another shard, pushed after 4 on the same connection, proves a could have
    // received 4 by now.
    a.subscribe(P);
    await probe(b, gotA, P);
    // No echo: each side has only the other's diffs (probes are seqno 0, from the other side).
    expect(real(seqnos(gotA, S))).toEqual([2n, 3n]);
    expect(real(seqnos(gotB, S))).toEqual([1n]);
  });

  it('carries the gRPC envelope bytes and accepts them from any NATS publisher', async () => {
    const prefix = uniquePrefix('envelope');
    const S = 's00000000-0000-0000-0000-0000000e1e0e';
    const nc = await rawNats(SHARED);
    const seen: Uint8Array[] = [];
    nc.subscribe(shardSubject(prefix, S), {
      callback: (_e, m) => {
        seen.push(m.data);
      },
    });
    await nc.flush();
    const w = natsClient(SHARED, prefix, 'w');
    await until(() => w.status.state === 'connected');
    expect(w.push(S, 42n, new Uint8Array([1, 2, 3]), 1_700_000_000_500)).toBe(true);
    await until(() => seen.length === 1);
    const msg = fromBinary(ProtoPubSubMessageSchema, seen[0]!);
    expect(msg.message.case).toBe('pushDiff');
    const p = msg.message.value as { shardId: string; seqno: bigint; diff: Uint8Array };
    expect(p).toMatchObject({ shardId: S, seqno: 42n });
    expect([...p.diff]).toEqual([1, 2, 3]);
    expect(msg.message.case === 'pushDiff' && msg.message.value.originTimestamp).toMatchObject({
      secs: 1_700_000_000n,
      nanos: 500_000_000,
    });
    expect(msg.timestamp?.secs).toBeGreaterThan(0n);

    // Inbound: a raw publisher's envelope arrives; garbage and a shard/subject mismatch don't.
    const r = natsClient(SHARED, prefix, 'r');
    const got = collect(r);
    r.subscribe(S);
    await until(() => r.status.state === 'connected');
    const envelope = (shardId: string, seqno: bigint) =>
      toBinary(
        ProtoPubSubMessageSchema,
        create(ProtoPubSubMessageSchema, {
          message: {
            case: 'pushDiff',
            value: create(ProtoPushDiffSchema, { shardId, seqno, diff: new Uint8Array([9]) }),
          },
        }),
      );
    const deadline = Date.now() + 10_000;
    while (seqnos(got, S).length === 0 && Date.now() < deadline) {
      nc.publish(shardSubject(prefix, S), new Uint8Array([0xff, 0xff, 0xff]));
      nc.publish(shardSubject(prefix, S), envelope('s-other-shard', 5n));
      nc.publish(shardSubject(prefix, S), envelope(S, 7n));
      await new Promise((res) => setTimeout(res, 20));
    }
    expect(new Set(seqnos(got, S))).toEqual(new Set([7n]));
    expect(got.some((e) => e.kind === 'diff' && e.shardId !== S)).toBe(false);
    expect(r.status.state).toBe('connected');
  });

  it('JetStream (opt-in): a subscribe with resumeAfterSeqno replays the retained newer diffs', async () => {
    const prefix = uniquePrefix('js');
    const stream = `PPTEST_${prefix.split('.').at(-1)}`;
    const jsOpts = { stream, maxAgeMs: 60_000, maxMsgsPerSubject: 16 };
    const nc = await rawNats(SHARED);
    cleanup.push(async () => {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(stream).catch(() => {});
    });
    const mk = (id: string) => {
      const c = createPubSubClient(
        createNatsTransport({
          url: SHARED,
          subjectPrefix: prefix,
          callerId: id,
          jetstream: jsOpts,
        }),
        { flags: fastFlags(), initialConnectBackoffMs: 10 },
      );
      cleanup.push(() => c.close());
      return c;
    };
    const S = shard(9);
    const w = mk('w');
    await until(() => w.status.state === 'connected');
    for (let i = 1n; i <= 5n; i++) w.push(S, i, new Uint8Array([Number(i)]));
    const jsm = await jetstreamManager(nc);
    const subject = shardSubject(prefix, S);
    const stored = async () =>
      (await jsm.streams.info(stream, { subjects_filter: subject })).state.subjects?.[subject] ?? 0;
    for (const deadline = Date.now() + 5000; (await stored()) < 5; ) {
      if (Date.now() > deadline) throw new Error('the stream never held 5 diffs');
      await new Promise((r) => setTimeout(r, 20));
    }
    const resumed = mk('resumed');
    const gotR = collect(resumed);
    resumed.subscribe(S, { resumeAfterSeqno: 2n });
    const fresh = mk('fresh');
    const gotF = collect(fresh);
    fresh.subscribe(S);
    await until(() => seqnos(gotR, S).length >= 3, 10_000, 'replay');
    // A live diff after the replay, to both: proves fresh had its chance to get a replay too.
    await until(() => fresh.status.state === 'connected');
    await probe(w, gotF, S);
    expect(
      seqnos(gotR, S)
        .filter((x) => x !== 0n)
        .slice(0, 3),
    ).toEqual([3n, 4n, 5n]);
    expect(real(seqnos(gotF, S))).toEqual([]);
    const three = gotR.find((e) => e.kind === 'diff' && e.seqno === 3n);
    expect(three?.kind === 'diff' && [...three.diff]).toEqual([3]);
  });

  it('server restart: reconnects, resubscribes, emits resync, traffic resumes, outage subscriptions honoured', async () => {
    own = await ownNatsServer();
    await own.start();
    const prefix = uniquePrefix('restart');
    const a = natsClient(own.url, prefix, 'a');
    const b = natsClient(own.url, prefix, 'b');
    const S = shard(4);
    const T = shard(5);
    const gotA = collect(a);
    const gotB = collect(b);
    const statusesB: string[] = [];
    void (async () => {
      for await (const s of b.statusChanges()) statusesB.push(s.state);
    })();
    a.subscribe(S);
    b.subscribe(S);
    await until(() => a.status.state === 'connected' && b.status.state === 'connected');
    await probe(a, gotB, S);
    a.push(S, 1n, new Uint8Array());
    await until(() => real(seqnos(gotB, S)).length === 1);

    await own.kill();
    await until(() => a.status.state !== 'connected' && b.status.state !== 'connected');
    expect(a.push(S, 2n, new Uint8Array())).toBe(false);
    b.subscribe(T); // made during the outage
    await own.start();
    await until(() => a.status.state === 'connected' && b.status.state === 'connected');
    // Both sides learnt of the reconnect, to catch up from Consensus.
    expect(gotA.filter((e) => e.kind === 'resync' && e.reconnect)).toHaveLength(1);
    expect(gotB.find((e) => e.kind === 'resync' && e.reconnect)).toMatchObject({
      shardIds: [S, T],
    });
    expect(statusesB).toEqual(expect.arrayContaining(['connected', 'backoff', 'connecting']));
    expect(statusesB.lastIndexOf('connected')).toBeGreaterThan(statusesB.indexOf('backoff'));
    await probe(a, gotB, T);
    await probe(b, gotA, S);
    a.push(S, 3n, new Uint8Array());
    b.push(S, 4n, new Uint8Array());
    a.push(T, 1n, new Uint8Array());
    await until(() => real(seqnos(gotB, S)).length === 2 && real(seqnos(gotA, S)).length === 1);
    await until(() => real(seqnos(gotB, T)).length === 1);
    expect(real(seqnos(gotB, S))).toEqual([1n, 3n]);
    expect(real(seqnos(gotA, S))).toEqual([4n]);
  });
});

describe.skipIf(!natsOk)("createPersistClient({ pubsub: 'nats://…' })", () => {
  it('a reader sees each commit through NATS, and catches up after a server restart', async () => {
    const server = await ownNatsServer();
    cleanup.push(() => server.kill());
    await server.start();
    const store = createMemoryConsensus();
    const S = `s${crypto.randomUUID()}`;
    const config = {
      persist_pubsub_reconnect_backoff_ms: 20,
      persist_pubsub_connect_max_backoff_ms: 50,
      // A slow first poll: a reader that sees a commit sooner got it through pubsub.
      persist_next_listen_batch_retryer_fixed_sleep_ms: 5000,
    };
    const writer = await createPersistClient({
      consensus: store,
      pubsub: server.url,
      config,
      callerId: 'w',
    });
    const reader = await createPersistClient({
      consensus: store,
      pubsub: server.url,
      config,
      callerId: 'r',
    });
    cleanup.push(
      () => writer.close(),
      () => reader.close(),
    );
    expect(reader.pubsub.transport).toBe('nats');
    const { wh, rh } = await openWriterAndReader(writer, reader, S, cleanup, 10_000);
    // The first few commits may race the reader's SUB reaching the server; after one arrives
    // through pubsub, every later one does.
    let viaPubsub = 0;
    for (let i = 1; i <= 30; i++) {
      const res = await wh.update((s) => s + 1);
      const t0 = Date.now();
      const seen = await rh.waitForSeqno(res.seqno, { signal: AbortSignal.timeout(8000) });
      expect(seen.state).toBe(i);
      if (Date.now() - t0 < 1000) viaPubsub++;
    }
    expect(viaPubsub).toBeGreaterThanOrEqual(25);

    // Restart: commits made during the outage reach the reader through the resync fetch after
    // the reconnect, long before its 5 s poll.
    await server.kill();
    await until(() => reader.pubsub.status.state !== 'connected');
    const during = await wh.update((s) => s + 100);
    await server.start();
    const t0 = Date.now();
    const seen = await rh.waitForSeqno(during.seqno, { signal: AbortSignal.timeout(4000) });
    expect(seen.state).toBe(130);
    expect(Date.now() - t0).toBeLessThan(4000);
  });
});

// Referenced so a port helper stays exercised even if a scenario above changes.
void freePort;
