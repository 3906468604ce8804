import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createFakeClock } from '../util/index.js';
import { connectBackoffMs, createPubSubClient, jitterMs } from './create-pubsub-client.js';
import { createFlags } from './flags.js';
import type { ConnectionStatus, PubSubEvent } from './pubsub-client.js';
import type { ConnectOptions, PubSubConnection, PubSubTransport } from './transport.js';

/** A transport whose connections record what was sent and can be failed by the test. */
function fakeTransport() {
  const sent: string[] = [];
  const conns: { opts: ConnectOptions; closed: boolean }[] = [];
  let refuse = 0;
  let hang = 0;
  /** What the live connection reports as waiting for the wire. */
  let buffered = 0;
  const attemptsAt: number[] = [];
  const clock = createFakeClock();
  const transport: PubSubTransport = {
    kind: 'fake',
    async connect(opts) {
      attemptsAt.push(clock.monotonicMs());
      opts.signal.throwIfAborted();
      if (hang > 0) {
        hang--;
        // Never answers: only the attempt's signal (its timeout, a flag, close) ends it.
        await new Promise((_, reject) => {
          opts.signal.addEventListener('abort', () => reject(opts.signal.reason), { once: true });
        });
      }
      if (refuse > 0) {
        refuse--;
        throw new Error('refused');
      }
      const rec = { opts, closed: false };
      conns.push(rec);
      const conn: PubSubConnection = {
        subscribe: (s, r) => sent.push(`sub ${s} ${r ?? '-'}`) && 10,
        unsubscribe: (s) => sent.push(`unsub ${s}`) && 10,
        push: (s, n) => sent.push(`push ${s} ${n}`) && 20,
        bufferedBytes: () => buffered,
        close: () => {
          rec.closed = true;
        },
      };
      return conn;
    },
  };
  return {
    transport,
    /** The clock the client under test runs on: no real sleeps. */
    clock,
    sent,
    conns,
    /** When each connect attempt started, in fake monotonic ms. */
    attemptsAt,
    refuseNext(n: number) {
      refuse = n;
    },
    hangNext(n: number) {
      hang = n;
    },
    setBuffered(bytes: number) {
      buffered = bytes;
    },
  };
}

async function take(it: AsyncIterator<PubSubEvent>): Promise<PubSubEvent> {
  const r = await it.next();
  if (r.done) throw new Error('stream ended');
  return r.value;
}

describe('createPubSubClient', () => {
  it('refcounts subscriptions and unsubscribes on the last release', async () => {
    const f = fakeTransport();
    const client = createPubSubClient(f.transport, { clock: f.clock, initialConnectBackoffMs: 1 });
    await f.clock.advance(0);
    expect(client.status.state).toBe('connected');
    const a = client.subscribe('s1');
    const b = client.subscribe('s1');
    expect(f.sent).toEqual(['sub s1 -']);
    a.release();
    a.release();
    expect(client.subscribedShards()).toEqual(['s1']);
    {
      using _c = client.subscribe('s1');
    }
    expect(f.sent).toEqual(['sub s1 -']);
    b[Symbol.dispose]();
    expect(f.sent).toEqual(['sub s1 -', 'unsub s1']);
    expect(client.subscribedShards()).toEqual([]);
    await client.close();
    expect(client.status.state).toBe('closed');
  });

  it('subscribing before connecting takes effect on connect, with a resync event', async () => {
    const f = fakeTransport();
    f.refuseNext(2);
    const registry = new Registry();
    const client = createPubSubClient(f.transport, {
      clock: f.clock,
      initialConnectBackoffMs: 1,
      registry,
      flags: createFlags({ persist_pubsub_reconnect_backoff_ms: 1 }),
    });
    let resume = 7n;
    client.subscribe('s1', { resumeAfterSeqno: () => resume });
    const events = client.events()[Symbol.asyncIterator]();
    const first = take(events);
    await f.clock.advance(3); // two failed attempts, each followed by a backoff of at most 2 ms
    expect(await first).toEqual({ kind: 'resync', shardIds: ['s1'], reconnect: false });
    expect(f.sent).toEqual(['sub s1 7']);
    const attempts = await registry
      .getSingleMetric('persist_pubsub_client_connect_attempts_total')
      ?.get();
    expect(attempts?.values[0]?.value).toBe(3);
    // The connection drops: the loop reconnects and re-sends the subscription with the new seqno.
    resume = 9n;
    f.conns[0]!.opts.onClose(new Error('boom'));
    const second = take(events);
    await f.clock.advance(1);
    expect(await second).toEqual({ kind: 'resync', shardIds: ['s1'], reconnect: true });
    expect(f.sent).toEqual(['sub s1 7', 'sub s1 9']);
    await client.close();
  });

  it('delivers diffs for subscribed shards only, and drops pushes while disconnected', async () => {
    const f = fakeTransport();
    const registry = new Registry();
    const flags = createFlags({ persist_pubsub_reconnect_backoff_ms: 60_000 });
    const client = createPubSubClient(f.transport, { clock: f.clock, flags, registry });
    expect(client.push('s1', 1n, new Uint8Array(1))).toBe(false);
    await f.clock.advance(0);
    expect(client.status.state).toBe('connected');
    client.subscribe('s1');
    const events = client.events()[Symbol.asyncIterator]();
    await take(events); // resync
    const diff = (shardId: string, seqno: bigint) =>
      f.conns[0]!.opts.onMessage({
        kind: 'diff',
        shardId,
        seqno,
        diff: new Uint8Array([1]),
        originTimestampMs: 5,
        brokerTimestampMs: 6,
        bytes: 9,
      });
    diff('s2', 1n);
    diff('s1', 2n);
    expect(await take(events)).toMatchObject({ kind: 'diff', shardId: 's1', seqno: 2n });
    expect(client.push('s1', 3n, new Uint8Array(1), 123)).toBe(true);
    f.conns[0]!.opts.onClose(undefined);
    await f.clock.advance(0);
    expect(client.status.state).toBe('backoff');
    expect(client.push('s1', 4n, new Uint8Array(1))).toBe(false);
    const dropped = await registry
      .getSingleMetric('persist_pubsub_client_pushes_dropped_total')
      ?.get();
    expect(dropped?.values.find((v) => v.labels.reason === 'disconnected')?.value).toBe(2);
    await client.close();
  });

  it('drops a push only once the sender byte bound is full, counted as queue_full', async () => {
    const f = fakeTransport();
    const registry = new Registry();
    const flags = createFlags({ persist_pubsub_client_sender_buffer_bytes: 4096 });
    const client = createPubSubClient(f.transport, { clock: f.clock, flags, registry });
    await f.clock.advance(0);
    expect(client.status.state).toBe('connected');
    // Any number of pushes while the wire keeps up: a burst is not a backlog.
    for (let i = 1; i <= 100; i++)
      expect(client.push('s1', BigInt(i), new Uint8Array(100))).toBe(true);
    f.setBuffered(4095);
    expect(client.push('s1', 101n, new Uint8Array(100))).toBe(true);
    f.setBuffered(4096);
    expect(client.push('s1', 102n, new Uint8Array(100))).toBe(false);
    flags.set({ persist_pubsub_client_sender_buffer_bytes: 8192 });
    expect(client.push('s1', 103n, new Uint8Array(100))).toBe(true);
    const dropped = await registry
      .getSingleMetric('persist_pubsub_client_pushes_dropped_total')
      ?.get();
    expect(dropped?.values).toEqual([
      expect.objectContaining({
        labels: expect.objectContaining({ reason: 'queue_full' }),
        value: 1,
      }),
    ]);
    expect(f.sent.filter((x) => x.startsWith('push')).length).toBe(102);
    await client.close();
  });

  it('turns off within the flag change and back on, resubscribing', async () => {
    const f = fakeTransport();
    const flags = createFlags();
    const client = createPubSubClient(f.transport, { clock: f.clock, flags });
    await f.clock.advance(0);
    expect(client.status.state).toBe('connected');
    client.subscribe('s1');
    const seen: ConnectionStatus['state'][] = [];
    const watcher = (async () => {
      for await (const s of client.statusChanges()) seen.push(s.state);
    })();
    flags.set({ persist_pubsub_client_enabled: false });
    // Synchronously: the connection is closed and pushes stop.
    expect(f.conns[0]!.closed).toBe(true);
    expect(client.push('s1', 1n, new Uint8Array(1))).toBe(false);
    await f.clock.advance(0);
    expect(client.status.state).toBe('disabled');
    flags.set({ persist_pubsub_client_enabled: true });
    await f.clock.advance(0);
    expect(client.status.state).toBe('connected');
    expect(f.conns).toHaveLength(2);
    expect(f.sent).toEqual(['sub s1 -', 'sub s1 -']);
    flags.set({ persist_pubsub_push_diff_enabled: false });
    expect(client.push('s1', 1n, new Uint8Array(1))).toBe(false);
    flags.set({ persist_pubsub_push_diff_enabled: true });
    expect(client.push('s1', 1n, new Uint8Array(1))).toBe(true);
    await client.close();
    await watcher;
    expect(seen).toEqual(['connected', 'disabled', 'connecting', 'connected', 'closed']);
  });

  it('a lagging consumer gets a gap instead of the dropped diffs', async () => {
    const f = fakeTransport();
    const flags = createFlags({ persist_pubsub_client_receiver_channel_size: 2 });
    const client = createPubSubClient(f.transport, { clock: f.clock, flags });
    client.subscribe('s1');
    await f.clock.advance(0);
    expect(client.status.state).toBe('connected');
    for (let i = 1n; i <= 5n; i++) {
      f.conns[0]!.opts.onMessage({
        kind: 'diff',
        shardId: 's1',
        seqno: i,
        diff: new Uint8Array(),
        originTimestampMs: undefined,
        brokerTimestampMs: undefined,
        bytes: 1,
      });
    }
    const events = client.events()[Symbol.asyncIterator]();
    // resync + first diff fill the queue of 2; the other four diffs became one gap.
    expect(await take(events)).toMatchObject({
      kind: 'gap',
      shardId: 's1',
      reason: 'client_lagged',
    });
    expect(await take(events)).toMatchObject({ kind: 'resync' });
    expect(await take(events)).toMatchObject({ kind: 'diff', seqno: 1n });
    await client.close();
    expect(await events.next()).toEqual({ value: undefined, done: true });
  });

  it('retries failed connects on the jittered doubling schedule, capped, on the injected clock', async () => {
    const f = fakeTransport();
    f.refuseNext(5);
    const flags = createFlags({ persist_pubsub_connect_max_backoff_ms: 500 });
    const states: string[] = [];
    const client = createPubSubClient(f.transport, {
      clock: f.clock,
      flags,
      initialConnectBackoffMs: 100,
      random: () => 0, // the shortest jitter: half of each delay
    });
    const watcher = (async () => {
      for await (const s of client.statusChanges()) {
        states.push(s.state === 'backoff' ? `backoff ${s.delayMs}` : s.state);
      }
    })();
    // 100, 200, 400, 500 (capped), 500, each halved by the jitter.
    await f.clock.advance(50 + 100 + 200 + 250 + 249);
    expect(f.attemptsAt).toEqual([0, 50, 150, 350, 600]);
    expect(client.status.state).toBe('backoff');
    await f.clock.advance(1);
    expect(f.attemptsAt).toEqual([0, 50, 150, 350, 600, 850]);
    expect(client.status.state).toBe('connected');
    await client.close();
    await watcher;
    expect(states).toEqual([
      'connecting',
      'backoff 50',
      'connecting',
      'backoff 100',
      'connecting',
      'backoff 200',
      'connecting',
      'backoff 250',
      'connecting',
      'backoff 250',
      'connecting',
      'connected',
      'closed',
    ]);
    expect(f.clock.pending()).toBe(0);
  });

  it('waits the reconnect backoff after an established connection fails, then resubscribes', async () => {
    const f = fakeTransport();
    const flags = createFlags({ persist_pubsub_reconnect_backoff_ms: 5000 });
    const client = createPubSubClient(f.transport, { clock: f.clock, flags, random: () => 0.5 });
    client.subscribe('s1');
    await f.clock.advance(0);
    expect(client.status).toMatchObject({ state: 'connected', sinceMs: f.clock.nowMs() });
    f.conns[0]!.opts.onClose(new Error('reset'));
    await f.clock.advance(0);
    // Jitter 0.5 of [d/2, d]: 3750 ms.
    expect(client.status).toMatchObject({ state: 'backoff', attempt: 0, delayMs: 3750 });
    await f.clock.advance(3749);
    expect(f.attemptsAt).toEqual([0]);
    await f.clock.advance(1);
    expect(f.attemptsAt).toEqual([0, 3750]);
    expect(client.status.state).toBe('connected');
    expect(f.sent).toEqual(['sub s1 -', 'sub s1 -']);
    await client.close();
  });

  it('a refused shard is marked once, its pushes dropped, never re-sent; the others are', async () => {
    const f = fakeTransport();
    const registry = new Registry();
    const flags = createFlags({ persist_pubsub_reconnect_backoff_ms: 10 });
    const client = createPubSubClient(f.transport, { clock: f.clock, flags, registry });
    client.subscribe('s1');
    const refused = client.subscribe('s2');
    await f.clock.advance(0);
    const events = client.events()[Symbol.asyncIterator]();
    expect(await take(events)).toMatchObject({ kind: 'resync', shardIds: ['s1', 's2'] });
    const refuse = () =>
      f.conns[0]!.opts.onMessage({
        kind: 'refused',
        shardId: 's2',
        reason: 'invalid_shard_id',
        detail: 'too long',
        call: 'push',
        bytes: 30,
      });
    refuse();
    refuse(); // a second notice (a push in flight) changes nothing
    expect(await take(events)).toEqual({
      kind: 'refused',
      shardId: 's2',
      reason: 'invalid_shard_id',
      detail: 'too long',
      call: 'push',
    });
    expect(client.push('s2', 1n, new Uint8Array(1))).toBe(false);
    expect(client.push('s1', 1n, new Uint8Array(1))).toBe(true);
    // The connection stays; a reconnect re-sends s1 only.
    f.conns[0]!.opts.onClose(new Error('reset'));
    await f.clock.advance(10);
    expect(client.status.state).toBe('connected');
    expect(await take(events)).toMatchObject({ kind: 'resync', shardIds: ['s1'], reconnect: true });
    expect(f.sent).toEqual(['sub s1 -', 'sub s2 -', 'push s1 1', 'sub s1 -']);
    // Released: no unsubscribe for a shard the broker never took.
    refused.release();
    expect(f.sent).toHaveLength(4);
    const value = async (name: string, labels: Record<string, string>) =>
      (await registry.getSingleMetric(name)?.get())?.values.find((v) =>
        Object.entries(labels).every(([k, x]) => v.labels[k] === x),
      )?.value;
    expect(
      await value('persist_pubsub_client_shards_refused_total', { reason: 'invalid_shard_id' }),
    ).toBe(1);
    expect(await value('persist_pubsub_client_pushes_dropped_total', { reason: 'refused' })).toBe(
      1,
    );
    await client.close();
  });

  it("a token's scope refuses only the call it names: a push refusal keeps the subscription", async () => {
    const f = fakeTransport();
    const flags = createFlags({ persist_pubsub_reconnect_backoff_ms: 10 });
    const client = createPubSubClient(f.transport, { clock: f.clock, flags });
    const noPush = client.subscribe('s1');
    client.subscribe('s2');
    await f.clock.advance(0);
    const events = client.events()[Symbol.asyncIterator]();
    expect(await take(events)).toMatchObject({ kind: 'resync', shardIds: ['s1', 's2'] });
    const deny = (shardId: string, call: 'subscribe' | 'push') =>
      f.conns[0]!.opts.onMessage({
        kind: 'refused',
        shardId,
        reason: 'permission_denied',
        detail: `token "reader" may not ${call === 'push' ? 'publish to' : 'subscribe to'} ${shardId}`,
        call,
        bytes: 40,
      });
    deny('s1', 'push');
    deny('s1', 'push'); // a second push in flight: nothing new
    deny('s2', 'subscribe');
    expect(await take(events)).toMatchObject({ kind: 'refused', shardId: 's1', call: 'push' });
    expect(await take(events)).toMatchObject({ kind: 'refused', shardId: 's2', call: 'subscribe' });
    // s1: its pushes stop, its subscription stays; s2: not subscribed, but it may publish.
    expect(client.push('s1', 1n, new Uint8Array(1))).toBe(false);
    expect(client.push('s2', 1n, new Uint8Array(1))).toBe(true);
    f.conns[0]!.opts.onClose(new Error('reset'));
    await f.clock.advance(10);
    expect(await take(events)).toMatchObject({ kind: 'resync', shardIds: ['s1'], reconnect: true });
    noPush.release();
    expect(f.sent).toEqual(['sub s1 -', 'sub s2 -', 'push s2 1', 'sub s1 -', 'unsub s1']);
    await client.close();
  });

  it('times out a connect attempt that never answers, then backs off', async () => {
    const f = fakeTransport();
    f.hangNext(1);
    const flags = createFlags({ persist_pubsub_connect_attempt_timeout_ms: 5000 });
    const client = createPubSubClient(f.transport, {
      clock: f.clock,
      flags,
      initialConnectBackoffMs: 100,
      random: () => 0.999,
    });
    await f.clock.advance(4999);
    expect(client.status).toMatchObject({ state: 'connecting', attempt: 1 });
    await f.clock.advance(1);
    expect(client.status).toMatchObject({ state: 'backoff', attempt: 1, delayMs: 100 });
    expect(client.status.state === 'backoff' && client.status.error).toMatch(/timed out/);
    await f.clock.advance(100);
    expect(client.status.state).toBe('connected');
    expect(f.attemptsAt).toEqual([0, 5100]);
    await client.close();
    expect(f.clock.pending()).toBe(0);
  });

  it('close wakes a sleeping loop at once and leaves no timer behind', async () => {
    const f = fakeTransport();
    f.refuseNext(1);
    const client = createPubSubClient(f.transport, {
      clock: f.clock,
      initialConnectBackoffMs: 60_000,
    });
    await f.clock.advance(0);
    expect(client.status.state).toBe('backoff');
    expect(f.clock.pending()).toBe(1);
    await client.close();
    expect(client.status.state).toBe('closed');
    expect(f.clock.pending()).toBe(0);
  });

  it('backs off exponentially with jitter, capped', () => {
    expect([1, 2, 3, 4, 10].map((n) => connectBackoffMs(n, 100, 1000))).toEqual([
      100, 200, 400, 800, 1000,
    ]);
    expect(jitterMs(1000, () => 0)).toBe(500);
    expect(jitterMs(1000, () => 0.999999)).toBe(1000);
  });

  it('rejects bad input with a clear error', () => {
    const f = fakeTransport();
    const client = createPubSubClient(f.transport, { clock: f.clock });
    expect(() => client.subscribe('')).toThrow(
      expect.objectContaining({ code: 'invalid_shard_id' }),
    );
    expect(() => client.subscribe('a b')).toThrow(
      expect.objectContaining({ code: 'invalid_shard_id', reason: 'shard_id_charset' }),
    );
    expect(() =>
      createPubSubClient(fakeTransport().transport, { initialConnectBackoffMs: -1 }),
    ).toThrow(/initialConnectBackoffMs/);
    return client.close();
  });
});
