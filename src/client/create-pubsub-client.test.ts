import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createFakeClock } from '../util/index.js';
import { connectBackoffMs, createPubSubClient, jitterMs } from './create-pubsub-client.js';
import { createFlags } from './flags.js';
import type { ConnectionStatus, PubSubEvent } from './pubsub-client.js';
import type { ConnectOptions, PubSubConnection, PubSubTransport } from './transport.js';

/**
 * A transport whose connections record what was sent (all of them in `sent`, each its own in
 * `conns[i].sent`) and can be failed, or sent a GOAWAY (`opts.onGoaway`), by the test.
 */
function fakeTransport() {
  const sent: string[] = [];
  const conns: { opts: ConnectOptions; closed: boolean; sent: string[] }[] = [];
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
      const rec = { opts, closed: false, sent: [] as string[] };
      conns.push(rec);
      const record = (what: string, bytes: number): number | false => {
        if (rec.closed) return false;
        sent.push(what);
        rec.sent.push(what);
        return bytes;
      };
      const conn: PubSubConnection = {
        subscribe: (s, r) => record(`sub ${s} ${r ?? '-'}`, 10),
        unsubscribe: (s) => record(`unsub ${s}`, 10),
        push: (s, n) => record(`push ${s} ${n}`, 20),
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

describe('createPubSubClient: GOAWAY handover (make-before-break)', () => {
  const diffOn = (conn: { opts: ConnectOptions }, shardId: string, seqno: bigint): void =>
    conn.opts.onMessage({
      kind: 'diff',
      shardId,
      seqno,
      diff: new Uint8Array([Number(seqno)]),
      originTimestampMs: 5,
      brokerTimestampMs: 6,
      bytes: 9,
    });

  /** A client connected once, subscribed to s1 (resume 5), its first resync taken. */
  async function handoverSetup(flagValues: Parameters<typeof createFlags>[0] = {}, random = 0.5) {
    const f = fakeTransport();
    const registry = new Registry();
    const flags = createFlags({
      persist_pubsub_reconnect_backoff_ms: 60_000,
      persist_pubsub_goaway_reconnect_jitter_ms: 100,
      persist_pubsub_goaway_overlap_ms: 2000,
      ...flagValues,
    });
    const client = createPubSubClient(f.transport, {
      clock: f.clock,
      flags,
      registry,
      random: () => random,
    });
    const statuses: ConnectionStatus[] = [];
    void (async () => {
      for await (const s of client.statusChanges()) statuses.push(s);
    })();
    client.subscribe('s1', { resumeAfterSeqno: () => 5n });
    await f.clock.advance(0);
    const events = client.events()[Symbol.asyncIterator]();
    expect(await take(events)).toMatchObject({ kind: 'resync', reconnect: false });
    const metric = async (name: string, labels: Record<string, string> = {}) =>
      (await registry.getSingleMetric(name)?.get())?.values.find((v) =>
        Object.entries(labels).every(([k, x]) => v.labels[k] === x),
      )?.value ?? 0;
    return { f, client, events, statuses, metric };
  }

  it('opens the next connection without backoff, after a jitter within the flag', async () => {
    for (const [random, delay] of [
      [0, 0],
      [0.5, 50],
      [0.999, 100],
    ] as const) {
      const { f, client, statuses } = await handoverSetup({}, random);
      f.conns[0]!.opts.onGoaway?.();
      await f.clock.advance(0);
      if (delay > 0) {
        // Still connected: the old connection delivers while the next one is opened.
        expect(client.status).toEqual({
          state: 'connected',
          sinceMs: f.clock.nowMs(),
          connections: 1,
          draining: true,
        });
        await f.clock.advance(delay - 1);
        expect(f.attemptsAt).toEqual([0]);
        await f.clock.advance(1);
      }
      // Not the 60 s reconnect backoff: the jittered delay only.
      expect(f.attemptsAt).toEqual([0, delay]);
      expect(client.status).toMatchObject({ state: 'connected', connections: 2, reason: 'goaway' });
      const tags = (s: ConnectionStatus) =>
        [s.state, 'reason' in s ? s.reason : '', 'draining' in s ? 'draining' : ''].join(' ');
      expect(statuses.map(tags)).toEqual([
        'connecting  ',
        'connected  ',
        'connected  draining',
        'connected goaway ',
      ]);
      await client.close();
      expect(f.clock.pending()).toBe(0);
    }
  });

  it('moves subscriptions with their resume seqno, receives and pushes on both, then closes the old one', async () => {
    const { f, client, events, metric } = await handoverSetup({}, 0);
    const [old] = f.conns;
    old!.opts.onGoaway?.();
    // Before the new connection is up, the old one still carries pushes and subscriptions.
    expect(client.push('s1', 6n, new Uint8Array(1))).toBe(true);
    client.subscribe('s2');
    expect(old!.sent).toEqual(['sub s1 5', 'push s1 6', 'sub s2 -']);
    await f.clock.advance(0);
    const fresh = f.conns[1]!;
    expect(fresh.sent).toEqual(['sub s1 5', 'sub s2 -']);
    expect(old!.closed).toBe(false);
    // The overlap: a push goes on both; a diff arrives on both and is delivered once.
    expect(client.push('s1', 7n, new Uint8Array(1))).toBe(true);
    expect(old!.sent.at(-1)).toBe('push s1 7');
    expect(fresh.sent.at(-1)).toBe('push s1 7');
    diffOn(old!, 's1', 7n);
    diffOn(fresh, 's1', 7n);
    diffOn(fresh, 's1', 8n);
    diffOn(old!, 's1', 8n);
    // A restarted broker has no ring: its resume gap is not acted on while the old one is up.
    fresh.opts.onMessage({
      kind: 'gap',
      shardId: 's1',
      reason: 'resume_unavailable',
      fromSeqno: 6n,
      bytes: 5,
    });
    diffOn(old!, 's1', 9n);
    const got: string[] = [];
    for (let i = 0; i < 3; i++) {
      const ev = await take(events);
      got.push(ev.kind === 'diff' ? `diff ${ev.shardId} ${ev.seqno}` : ev.kind);
    }
    // No resync: the old connection was up all along, nothing moved unseen.
    expect(got).toEqual(['diff s1 7', 'diff s1 8', 'diff s1 9']);
    expect(await metric('persist_pubsub_client_goaway_duplicates_total')).toBe(2);
    expect(await metric('persist_pubsub_client_goaway_resume_gaps_ignored_total')).toBe(1);
    expect(
      await metric('persist_pubsub_client_goaway_handovers_total', { outcome: 'overlapped' }),
    ).toBe(1);
    expect(await metric('persist_pubsub_client_errors_total')).toBe(0);
    // The overlap ends: the old one is closed, pushes go on the new one only.
    await f.clock.advance(1999);
    expect(old!.closed).toBe(false);
    await f.clock.advance(1);
    expect(old!.closed).toBe(true);
    expect(client.push('s1', 10n, new Uint8Array(1))).toBe(true);
    expect(fresh.sent.at(-1)).toBe('push s1 10');
    expect(old!.sent.at(-1)).toBe('push s1 7');
    // A gap from the (now only) connection is acted on again.
    fresh.opts.onMessage({
      kind: 'gap',
      shardId: 's1',
      reason: 'resume_unavailable',
      fromSeqno: 11n,
      bytes: 5,
    });
    expect(await take(events)).toMatchObject({ kind: 'gap', shardId: 's1' });
    expect(client.status).toMatchObject({ state: 'connected', reason: 'goaway' });
    await client.close();
    expect(f.clock.pending()).toBe(0);
  });

  it('closes the old one when the broker ends it first, with no backoff and no error', async () => {
    const { f, client, metric } = await handoverSetup({}, 0);
    const [old] = f.conns;
    old!.opts.onGoaway?.();
    await f.clock.advance(0);
    expect(f.conns).toHaveLength(2);
    old!.opts.onClose(new Error('14 broker is shutting down'));
    await f.clock.advance(0);
    expect(old!.closed).toBe(true);
    expect(client.status).toMatchObject({ state: 'connected', reason: 'goaway' });
    expect(f.attemptsAt).toEqual([0, 0]);
    expect(await metric('persist_pubsub_client_errors_total')).toBe(0);
    // Nothing is pending: the overlap timer went with the old connection.
    expect(f.clock.pending()).toBe(0);
    await client.close();
  });

  it('if the first attempt fails, the connect backoff applies while the old one serves on', async () => {
    const { f, client, metric } = await handoverSetup({}, 0.999);
    const [old] = f.conns;
    f.refuseNext(1);
    old!.opts.onGoaway?.();
    await f.clock.advance(100); // the jitter, then the failed attempt
    expect(f.attemptsAt).toEqual([0, 100]);
    // Still connected (the old connection delivers) while the next attempt waits its backoff.
    expect(client.status).toMatchObject({ state: 'connected', connections: 1, draining: true });
    expect(client.push('s1', 6n, new Uint8Array(1))).toBe(true);
    expect(old!.sent.at(-1)).toBe('push s1 6');
    // initialConnectBackoffMs 100, jittered (0.999 of [50, 100]).
    await f.clock.advance(99);
    expect(f.attemptsAt).toEqual([0, 100]);
    await f.clock.advance(1);
    expect(f.attemptsAt).toEqual([0, 100, 200]);
    expect(client.status).toMatchObject({ state: 'connected', reason: 'goaway' });
    expect(
      await metric('persist_pubsub_client_goaway_handovers_total', { outcome: 'overlapped' }),
    ).toBe(1);
    await client.close();
    expect(old!.closed).toBe(true);
    expect(f.conns[1]!.closed).toBe(true);
  });

  it('an old connection that ends before the new one is up makes it a plain reconnect (resync)', async () => {
    const { f, client, events, metric } = await handoverSetup({}, 0.999);
    const [old] = f.conns;
    old!.opts.onGoaway?.();
    await f.clock.advance(0);
    old!.opts.onClose(new Error('14 broker is shutting down'));
    await f.clock.advance(0);
    // Not connected any more: the status says so (the jitter still runs), pushes are dropped.
    expect(client.status).toEqual({
      state: 'backoff',
      attempt: 0,
      delayMs: 100,
      error: 'GOAWAY: the broker is draining',
      reason: 'goaway',
    });
    expect(client.push('s1', 6n, new Uint8Array(1))).toBe(false);
    await f.clock.advance(100);
    expect(client.status).toMatchObject({ state: 'connected', reason: 'goaway' });
    expect(await take(events)).toEqual({ kind: 'resync', shardIds: ['s1'], reconnect: true });
    expect(
      await metric('persist_pubsub_client_goaway_handovers_total', { outcome: 'broken' }),
    ).toBe(1);
    await client.close();
  });

  it('a second GOAWAY during the overlap moves again; each old connection goes at its time', async () => {
    const { f, client } = await handoverSetup({}, 0);
    f.conns[0]!.opts.onGoaway?.();
    await f.clock.advance(0);
    await f.clock.advance(500);
    f.conns[1]!.opts.onGoaway?.();
    await f.clock.advance(0);
    expect(f.conns).toHaveLength(3);
    expect(client.push('s1', 6n, new Uint8Array(1))).toBe(true);
    expect(f.conns.map((c) => c.sent.at(-1))).toEqual(['push s1 6', 'push s1 6', 'push s1 6']);
    await f.clock.advance(1500); // the first overlap (2 s after the second connection)
    expect(f.conns.map((c) => c.closed)).toEqual([true, false, false]);
    await f.clock.advance(500); // the second (2 s after the third)
    expect(f.conns.map((c) => c.closed)).toEqual([true, true, false]);
    expect(client.status).toMatchObject({ state: 'connected', connections: 3, reason: 'goaway' });
    await client.close();
    expect(f.clock.pending()).toBe(0);
  });

  it('turning the client off mid-handover ends both connections; on again connects anew', async () => {
    const g = fakeTransport();
    const shared = createFlags({ persist_pubsub_goaway_reconnect_jitter_ms: 1000 });
    const c = createPubSubClient(g.transport, { clock: g.clock, flags: shared, random: () => 0.5 });
    c.subscribe('s1');
    await g.clock.advance(0);
    g.conns[0]!.opts.onGoaway?.();
    await g.clock.advance(0);
    shared.set({ persist_pubsub_client_enabled: false });
    expect(g.conns[0]!.closed).toBe(true);
    expect(c.status.state).toBe('disabled');
    expect(c.push('s1', 1n, new Uint8Array(1))).toBe(false);
    shared.set({ persist_pubsub_client_enabled: true });
    await g.clock.advance(0);
    expect(c.status).toMatchObject({ state: 'connected', connections: 2 });
    expect(g.conns[1]!.sent).toEqual(['sub s1 -']);
    await c.close();
    expect(g.clock.pending()).toBe(0);
  });

  it('close ends both connections of a handover', async () => {
    const { f, client } = await handoverSetup({ persist_pubsub_goaway_reconnect_jitter_ms: 1000 });
    f.conns[0]!.opts.onGoaway?.();
    await f.clock.advance(0);
    expect(client.status).toMatchObject({ state: 'connected', draining: true });
    await client.close();
    expect(client.status.state).toBe('closed');
    expect(f.conns[0]!.closed).toBe(true);
    expect(f.conns).toHaveLength(1);
    expect(f.clock.pending()).toBe(0);
  });
});
