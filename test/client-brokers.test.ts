/**
 * `createPersistClient` with several brokers over real loopback connections: a list of URLs,
 * and a host name resolving to two addresses (two brokers on one port at 127.0.0.1 and
 * 127.0.0.2, the resolver injected: no DNS). Replicated: every commit reaches the reader from
 * both brokers, the second copy is counted and costs no Consensus read; with one broker gone
 * the other carries on. Sharded: each shard's diffs go through its rendezvous broker only.
 * (Broker kills of real processes: test/fault/brokers.test.ts.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../src/broker/index.js';
import {
  type BrokerSetPubSubClient,
  createPersistClient,
  createRendezvous,
  type PersistClient,
  type PubSubTarget,
} from '../src/client/index.js';
import { createMemoryConsensus } from '../src/consensus/index.js';
import { sumMetric } from '../src/util/index.js';
import { counterModel } from './support/counter-model.js';
import { until } from './support/wait.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function startBroker(host: string, port = 0) {
  const broker = createBroker({ listen: { host, port } });
  await broker.start();
  cleanup.push(() => broker.destroy());
  return broker;
}

const fast = {
  persist_pubsub_reconnect_backoff_ms: 20,
  persist_pubsub_connect_max_backoff_ms: 50,
  // A slow first poll: what a reader sees sooner came through pubsub.
  persist_next_listen_batch_retryer_fixed_sleep_ms: 5000,
};

async function clients(pubsub: PubSubTarget) {
  const consensus = createMemoryConsensus();
  const writer = await createPersistClient({ consensus, pubsub, callerId: 'writer', config: fast });
  const reader = await createPersistClient({ consensus, pubsub, callerId: 'reader', config: fast });
  cleanup.push(
    () => writer.close(),
    () => reader.close(),
  );
  return { writer, reader };
}

const metric = (c: PersistClient, name: string, labels: Record<string, string> = {}) =>
  sumMetric(c.registry, name, (l) => Object.entries(labels).every(([k, v]) => l[k] === v));

/** Commits the reader applied from a pushed diff (the e2e histogram's count, path pubsub). */
async function viaPubsub(c: PersistClient): Promise<number> {
  const h = await c.registry.getSingleMetric('persist_pubsub_e2e_latency_seconds')?.get();
  const v = h?.values.find(
    (x) =>
      (x as { metricName?: string }).metricName === 'persist_pubsub_e2e_latency_seconds_count' &&
      x.labels.path === 'pubsub',
  );
  return v?.value ?? 0;
}

const brokersUp = (c: PersistClient, n: number) =>
  (c.pubsub as BrokerSetPubSubClient).brokers().filter((b) => b.status.state === 'connected')
    .length === n;

/**
 * Opens `shardId` on both clients and waits until the brokers hold `subscriptions` of it (a
 * push racing a subscribe on another connection would be missed), then returns a loop of `n`
 * commits, each awaited by the reader.
 */
async function commitAndFollow(
  writer: PersistClient,
  reader: PersistClient,
  shardId: string,
  n: number,
  brokers: Broker[],
  subscriptions: number,
) {
  const w = await writer.openShard(shardId, counterModel);
  const r = await reader.openShard(shardId, counterModel);
  cleanup.push(
    () => w.close(),
    () => r.close(),
  );
  const held = () =>
    brokers
      .flatMap((b) => b.listShards({ pageSize: 1000 }).items)
      .filter((i) => i.shardId === shardId)
      .reduce((sum, i) => sum + i.subscribers, 0);
  await until(() => held() === subscriptions, 5000, `${subscriptions} subscriptions of ${shardId}`);
  return async () => {
    for (let i = 0; i < n; i++) {
      const { seqno } = await w.update((s) => s + 1);
      await r.waitForSeqno(seqno, { signal: AbortSignal.timeout(2000) });
    }
  };
}

describe('several brokers', () => {
  it('replicated over a list: each commit arrives twice, applied once, no Consensus read', async () => {
    const a = await startBroker('127.0.0.1');
    const b = await startBroker('127.0.0.1');
    const urls = [a, b].map((x) => `grpc://127.0.0.1:${x.address.port}`);
    const { writer, reader } = await clients(urls);
    await until(() => brokersUp(writer, 2) && brokersUp(reader, 2), 5000, 'both brokers');
    expect(reader.pubsub.status).toMatchObject({ state: 'connected', connections: 2 });
    const run = await commitAndFollow(writer, reader, 's-replicated', 20, [a, b], 4);
    await new Promise((r) => setTimeout(r, 50)); // the first connection's catch-up settles
    const reads = await metric(reader, 'persist_pubsub_state_consensus_reads_total');
    await run();
    await new Promise((r) => setTimeout(r, 50)); // the second copies arrive
    expect(await metric(reader, 'persist_pubsub_client_duplicate_diffs_total')).toBe(20);
    expect(await metric(reader, 'persist_pubsub_state_consensus_reads_total')).toBe(reads);
    expect(await viaPubsub(reader)).toBe(20);

    // One broker gone: the other carries every commit, still with no Consensus read.
    await b.destroy();
    await until(() => brokersUp(reader, 1) && brokersUp(writer, 1), 5000, 'one broker down');
    expect(reader.pubsub.status).toMatchObject({ state: 'connected', connections: 1 });
    await run();
    expect(await metric(reader, 'persist_pubsub_state_consensus_reads_total')).toBe(reads);
    expect(await viaPubsub(reader)).toBe(40);
  });

  it('a host name resolving to two addresses is two brokers', async () => {
    const a = await startBroker('127.0.0.1');
    const b = await startBroker('127.0.0.2', a.address.port);
    const asked: string[] = [];
    const resolve = async (host: string) => {
      asked.push(host);
      return ['127.0.0.1', '127.0.0.2'];
    };
    const { writer, reader } = await clients({
      brokers: `grpc://pubsub.test:${a.address.port}`,
      resolve,
    });
    await until(() => brokersUp(writer, 2) && brokersUp(reader, 2), 5000, 'both addresses');
    expect((reader.pubsub as BrokerSetPubSubClient).brokers().map((x) => x.url)).toEqual([
      `grpc://127.0.0.1:${a.address.port}`,
      `grpc://127.0.0.2:${a.address.port}`,
    ]);
    expect(asked).toEqual(['pubsub.test', 'pubsub.test']);
    const run = await commitAndFollow(writer, reader, 's-resolved', 5, [a, b], 4);
    await run();
    await new Promise((r) => setTimeout(r, 50));
    expect(await metric(reader, 'persist_pubsub_client_duplicate_diffs_total')).toBe(5);
  });

  it('sharded: each shard through its rendezvous broker only', async () => {
    const a = await startBroker('127.0.0.1');
    const b = await startBroker('127.0.0.1');
    const urls = [a, b].map((x) => `grpc://127.0.0.1:${x.address.port}`);
    const { writer, reader } = await clients({ brokers: urls, mode: 'sharded' });
    await until(() => brokersUp(writer, 2) && brokersUp(reader, 2), 5000, 'both brokers');
    const ranking = createRendezvous(urls);
    const shards = Array.from({ length: 8 }, (_, i) => `s-sharded-${i}`);
    for (const s of shards) await (await commitAndFollow(writer, reader, s, 3, [a, b], 2))();
    const carried = (broker: typeof a) =>
      broker
        .listShards({ pageSize: 100 })
        .items.filter((i) => i.lastSeqno === '3' && i.subscribers === 2)
        .map((i) => i.shardId)
        .sort();
    const [onA, onB] = [urls[0], urls[1]].map((u) => shards.filter((s) => ranking.owner(s) === u));
    expect(onA?.length).toBeGreaterThan(0);
    expect(onB?.length).toBeGreaterThan(0);
    expect(carried(a)).toEqual([...(onA ?? [])].sort());
    expect(carried(b)).toEqual([...(onB ?? [])].sort());
    for (const s of shards) {
      expect((writer.pubsub as BrokerSetPubSubClient).brokerOf(s)).toBe(ranking.owner(s));
    }
    expect(await metric(reader, 'persist_pubsub_client_duplicate_diffs_total')).toBe(0);
    expect(await viaPubsub(reader)).toBe(24);
  });
});
