import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { connectBackoffMs, createPubSubClient, jitterMs } from './create-pubsub-client.js';
import { createFlags } from './flags.js';
import type { ConnectionStatus, PubSubEvent } from './pubsub-client.js';
import type { ConnectOptions, PubSubConnection, PubSubTransport } from './transport.js';

/** A transport whose connections record what was sent and can be failed by the test. */
function fakeTransport() {
  const sent: string[] = [];
  const conns: { opts: ConnectOptions; closed: boolean }[] = [];
  let refuse = 0;
  const transport: PubSubTransport = {
    kind: 'fake',
    async connect(opts) {
      opts.signal.throwIfAborted();
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
        pendingPushes: () => 0,
        close: () => {
          rec.closed = true;
        },
      };
      return conn;
    },
  };
  return {
    transport,
    sent,
    conns,
    refuseNext(n: number) {
      refuse = n;
    },
  };
}

async function until(pred: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function take(it: AsyncIterator<PubSubEvent>): Promise<PubSubEvent> {
  const r = await it.next();
  if (r.done) throw new Error('stream ended');
  return r.value;
}

describe('createPubSubClient', () => {
  it('refcounts subscriptions and unsubscribes on the last release', async () => {
    const f = fakeTransport();
    const client = createPubSubClient(f.transport, { initialConnectBackoffMs: 1 });
    await until(() => client.status.state === 'connected');
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
      initialConnectBackoffMs: 1,
      registry,
      flags: createFlags({ persist_pubsub_reconnect_backoff_ms: 1 }),
    });
    let resume = 7n;
    client.subscribe('s1', { resumeAfterSeqno: () => resume });
    const events = client.events()[Symbol.asyncIterator]();
    expect(await take(events)).toEqual({ kind: 'resync', shardIds: ['s1'], reconnect: false });
    expect(f.sent).toEqual(['sub s1 7']);
    const attempts = await registry
      .getSingleMetric('persist_pubsub_client_connect_attempts_total')
      ?.get();
    expect(attempts?.values[0]?.value).toBe(3);
    // The connection drops: the loop reconnects and re-sends the subscription with the new seqno.
    resume = 9n;
    f.conns[0]!.opts.onClose(new Error('boom'));
    expect(await take(events)).toEqual({ kind: 'resync', shardIds: ['s1'], reconnect: true });
    expect(f.sent).toEqual(['sub s1 7', 'sub s1 9']);
    await client.close();
  });

  it('delivers diffs for subscribed shards only, and drops pushes while disconnected', async () => {
    const f = fakeTransport();
    const registry = new Registry();
    const flags = createFlags({ persist_pubsub_reconnect_backoff_ms: 60_000 });
    const client = createPubSubClient(f.transport, { flags, registry });
    expect(client.push('s1', 1n, new Uint8Array(1))).toBe(false);
    await until(() => client.status.state === 'connected');
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
    await until(() => client.status.state === 'backoff');
    expect(client.push('s1', 4n, new Uint8Array(1))).toBe(false);
    const dropped = await registry
      .getSingleMetric('persist_pubsub_client_pushes_dropped_total')
      ?.get();
    expect(dropped?.values.find((v) => v.labels.reason === 'disconnected')?.value).toBe(2);
    await client.close();
  });

  it('turns off within the flag change and back on, resubscribing', async () => {
    const f = fakeTransport();
    const flags = createFlags();
    const client = createPubSubClient(f.transport, { flags });
    await until(() => client.status.state === 'connected');
    client.subscribe('s1');
    const seen: ConnectionStatus['state'][] = [];
    const watcher = (async () => {
      for await (const s of client.statusChanges()) seen.push(s.state);
    })();
    flags.set({ persist_pubsub_client_enabled: false });
    // Synchronously: the connection is closed and pushes stop.
    expect(f.conns[0]!.closed).toBe(true);
    expect(client.push('s1', 1n, new Uint8Array(1))).toBe(false);
    await until(() => client.status.state === 'disabled');
    flags.set({ persist_pubsub_client_enabled: true });
    await until(() => client.status.state === 'connected');
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
    const client = createPubSubClient(f.transport, { flags });
    client.subscribe('s1');
    await until(() => client.status.state === 'connected');
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

  it('backs off exponentially with jitter, capped', () => {
    expect([1, 2, 3, 4, 10].map((n) => connectBackoffMs(n, 100, 1000))).toEqual([
      100, 200, 400, 800, 1000,
    ]);
    expect(jitterMs(1000, () => 0)).toBe(500);
    expect(jitterMs(1000, () => 0.999999)).toBe(1000);
  });

  it('rejects bad input with a clear error', () => {
    const client = createPubSubClient(fakeTransport().transport);
    expect(() => client.subscribe('')).toThrow(/shardId/);
    expect(() =>
      createPubSubClient(fakeTransport().transport, { initialConnectBackoffMs: -1 }),
    ).toThrow(/initialConnectBackoffMs/);
    return client.close();
  });
});
