/**
 * `createPersistClient` end to end in one process: a writer and a reader client (each its own
 * shard-state cache, as two processes would have) over one Consensus and a real broker on
 * loopback. The reader sees each commit through pubsub long before its first poll; runtime
 * flags toggled mid-traffic switch pubsub off and on within 100 ms while the reader stays
 * correct (polling, then catching up on reconnect).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createBroker, createMetricsServer } from '../src/broker/index.js';
import { createPersistClient, type PersistClient } from '../src/client/index.js';
import { createMemoryConsensus } from '../src/consensus/index.js';
import { counterModel } from './support/counter-model.js';
import { countingConsensus } from './support/counting-consensus.js';
import { openWriterAndReader } from './support/writer-reader.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function until(pred: () => boolean, timeoutMs = 5000): Promise<number> {
  const t0 = performance.now();
  while (!pred()) {
    if (performance.now() - t0 > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 1));
  }
  return performance.now() - t0;
}

const S = 's00000000-0000-0000-0000-00000000c11e';

async function setup() {
  const broker = createBroker({ listen: { host: '127.0.0.1', port: 0 } });
  await broker.start();
  cleanup.push(() => broker.destroy());
  const store = createMemoryConsensus();
  const w = countingConsensus(store);
  const r = countingConsensus(store);
  const url = `grpc://127.0.0.1:${broker.address.port}`;
  const fast = {
    persist_pubsub_reconnect_backoff_ms: 20,
    persist_pubsub_connect_max_backoff_ms: 50,
    // A slow first poll: a reader that sees a commit sooner got it through pubsub.
    persist_next_listen_batch_retryer_fixed_sleep_ms: 2000,
  };
  const writer = await createPersistClient({
    consensus: w.consensus,
    pubsub: url,
    callerId: 'writer',
    config: fast,
  });
  const reader = await createPersistClient({
    consensus: r.consensus,
    pubsub: url,
    callerId: 'reader',
    config: fast,
  });
  cleanup.push(
    () => writer.close(),
    () => reader.close(),
  );
  return { broker, writer, reader, writerReads: w.counts, readerReads: r.counts };
}

async function commit(writer: PersistClient, n: number) {
  const h = await writer.openShard(S, counterModel);
  try {
    for (let i = 0; i < n; i++) await h.update((s) => s + 1);
  } finally {
    h.close();
  }
}

describe('createPersistClient', () => {
  it('a reader sees each commit through pubsub, without reading Consensus', async () => {
    const { writer, reader, readerReads } = await setup();
    const { wh, rh } = await openWriterAndReader(writer, reader, S, cleanup);
    await new Promise((r) => setTimeout(r, 50)); // the resync catch-up read settles
    const readsBefore = readerReads.reads;
    for (let i = 1; i <= 20; i++) {
      const res = await wh.update((s) => s + 1);
      const seen = await rh.waitForSeqno(res.seqno, { signal: AbortSignal.timeout(1000) });
      expect(seen.state).toBe(i);
    }
    expect(readerReads.reads - readsBefore).toBe(0);
    const e2e = await reader.registry.getSingleMetric('persist_pubsub_e2e_latency_seconds')?.get();
    const count = e2e?.values.find(
      (v) =>
        (v as { metricName?: string }).metricName === 'persist_pubsub_e2e_latency_seconds_count' &&
        v.labels.path === 'pubsub',
    );
    expect(count?.value).toBe(20);

    // A process without an HTTP server serves its client registry on /metrics.
    const server = createMetricsServer({
      registry: reader.registry,
      listen: { host: '127.0.0.1', port: 0 },
    });
    await server.start();
    cleanup.push(() => server.close());
    const text = await (await fetch(`http://127.0.0.1:${server.address.port}/metrics`)).text();
    expect(text).toMatch(/persist_pubsub_e2e_latency_seconds_count\{path="pubsub"\} 20/);
    expect(text).toMatch(/persist_pubsub_client_connected\{transport="grpc"\} 1/);
  });

  it('flags toggled mid-traffic: off within 100 ms, readers poll and stay correct, on again resubscribes', async () => {
    const { writer, reader, broker } = await setup();
    reader.flags.set({ persist_next_listen_batch_retryer_fixed_sleep_ms: 30 });
    const rh = await reader.openShard(S, counterModel);
    cleanup.push(() => rh.close());
    await until(
      () =>
        reader.pubsub.status.state === 'connected' && writer.pubsub.status.state === 'connected',
    );
    await commit(writer, 3);
    expect((await rh.waitForSeqno(3n, { signal: AbortSignal.timeout(500) })).state).toBe(3);

    // Reader client off: the switch is synchronous in the client (stream closed, status off,
    // pushes refused), well within 100 ms; the broker then sees the stream end.
    const t0 = performance.now();
    reader.flags.set({ persist_pubsub_client_enabled: false });
    expect(reader.pubsub.status.state).toBe('disabled');
    expect(reader.pubsub.push(S, 99n, new Uint8Array())).toBe(false);
    expect(performance.now() - t0).toBeLessThan(100);
    await until(
      () => (broker.listShards().items.find((s) => s.shardId === S)?.subscribers ?? 0) === 0,
      1000,
    );
    await commit(writer, 3);
    // Polling alone gets there, and the state is right.
    expect((await rh.waitForSeqno(6n, { signal: AbortSignal.timeout(3000) })).state).toBe(6);

    // Writer pushes off: nothing reaches the broker; on again: pushes flow.
    reader.flags.set({ persist_pubsub_client_enabled: true });
    // The loop acts at once (connecting); the connection itself is a loopback handshake. The
    // bound leaves room for a loaded CI machine; the reaction is measured by the demo/bench.
    expect(await until(() => reader.pubsub.status.state !== 'disabled', 1000)).toBeLessThan(1000);
    await until(() => reader.pubsub.status.state === 'connected', 1000);
    writer.flags.set({ persist_pubsub_push_diff_enabled: false });
    await commit(writer, 2);
    const dropped = await writer.registry
      .getSingleMetric('persist_pubsub_client_pushes_dropped_total')
      ?.get();
    expect(dropped?.values.find((v) => v.labels.reason === 'push_disabled')?.value).toBe(2);
    expect((await rh.waitForSeqno(8n, { signal: AbortSignal.timeout(3000) })).state).toBe(8);
    writer.flags.set({ persist_pubsub_push_diff_enabled: true });
    // Back to pubsub speed: with the first poll at 2 s, a fast arrival proves the push path.
    reader.flags.set({ persist_next_listen_batch_retryer_fixed_sleep_ms: 2000 });
    const h = await writer.openShard(S, counterModel);
    cleanup.push(() => h.close());
    const res = await h.update((s) => s + 1);
    const t1 = performance.now();
    expect((await rh.waitForSeqno(res.seqno, { signal: AbortSignal.timeout(1500) })).state).toBe(9);
    expect(performance.now() - t1).toBeLessThan(500);
  });

  it('a gap notice from the broker (forwarding off) makes the reader fetch at once, not at its poll', async () => {
    const { writer, reader, broker } = await setup();
    const rh = await reader.openShard(S, counterModel);
    const wh = await writer.openShard(S, counterModel);
    cleanup.push(
      () => rh.close(),
      () => wh.close(),
    );
    await until(
      () =>
        reader.pubsub.status.state === 'connected' && writer.pubsub.status.state === 'connected',
    );
    await until(
      () => (broker.listShards().items.find((x) => x.shardId === S)?.subscribers ?? 0) === 2,
    );
    broker.setFlags({ forwardPushes: false });
    const res = await wh.update((s) => s + 1);
    const t0 = performance.now();
    // The first poll is at 2 s: seeing it well before means the gap notice triggered a fetch.
    expect((await rh.waitForSeqno(res.seqno, { signal: AbortSignal.timeout(1500) })).state).toBe(1);
    expect(performance.now() - t0).toBeLessThan(500);
    const fetches = await reader.registry
      .getSingleMetric('persist_pubsub_client_catch_up_fetches_total')
      ?.get();
    expect(fetches?.values.find((v) => v.labels.reason === 'gap')?.value).toBeGreaterThanOrEqual(1);
    broker.setFlags({ forwardPushes: true });
  });

  it('polling only (pubsub omitted): commits count no dropped pushes, even with pushes flagged off', async () => {
    const store = createMemoryConsensus();
    const writer = await createPersistClient({ consensus: store });
    cleanup.push(() => writer.close());
    const wh = await writer.openShard(S, counterModel);
    cleanup.push(() => wh.close());
    for (let i = 0; i < 3; i++) await wh.update((s) => s + 1);
    writer.flags.set({ persist_pubsub_push_diff_enabled: false });
    await wh.update((s) => s + 1);
    expect(wh.seqno).toBe(4n);
    const dropped = await writer.registry
      .getSingleMetric('persist_pubsub_client_pushes_dropped_total')
      ?.get();
    expect(dropped?.values).toEqual([]);
  });

  it('rejects bad options naming the field', async () => {
    await expect(
      createPersistClient({ consensus: createMemoryConsensus(), pubsub: 'http://x:1' }),
    ).rejects.toThrow(/grpc:\/\//);
    await expect(createPersistClient({ consensus: 42 as never })).rejects.toThrow(/consensus/);
    await expect(
      createPersistClient({
        consensus: createMemoryConsensus(),
        config: { persist_pubsub_client_enabled: 'maybe' },
      }),
    ).rejects.toThrow(/persist_pubsub_client_enabled/);
  });
});
