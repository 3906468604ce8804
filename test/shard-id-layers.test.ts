/**
 * One shard id rule across the layers (src/protocol), with the ids one layer used to accept and
 * another refused (issue 12): a space, non-ASCII, control bytes, 257 and 513 bytes.
 *
 * - `openShard` refuses each with `ShardIdError` (`invalid_shard_id`) before Consensus or pubsub
 *   sees it, on the gRPC, in-process and NATS transports; the client's other shards keep working.
 * - A broker with a smaller limit (`maxShardIdBytes: 64`) refuses a valid 100-byte id anyway:
 *   that one shard is marked refused (metric, the handle's `pubsubStatus`), the stream stays up
 *   for every other shard (fast path kept), and the refused shard is not re-sent on reconnect.
 * - At the wire: a client that speaks extensions gets a refusal notice and keeps its stream; a
 *   reference client's stream ends with INVALID_ARGUMENT as before (broker-limits.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../src/broker/index.js';
import { createPersistClient, type PersistClient } from '../src/client/index.js';
import { createMemoryConsensus } from '../src/consensus/index.js';
import { decodeMessage, encodeSubscribe, ShardIdError } from '../src/protocol/index.js';
import { counterModel } from './support/counter-model.js';
import { countingConsensus } from './support/counting-consensus.js';
import { openRaw } from './support/grpc-clients.js';
import { requireService, SERVICE_URLS } from './support/services.js';
import { until } from './support/wait.js';
import { openWriterAndReader } from './support/writer-reader.js';

const natsOk = await requireService('nats');

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** Ids some layer used to accept and another refused, and why the one rule refuses them. */
const BAD_IDS: [string, string, string][] = [
  ['a space', 'orders 2024', 'shard_id_charset'],
  ['non-ASCII', 's-ünïcode', 'shard_id_charset'],
  ['control bytes', 's\u0001\u0007x', 'shard_id_charset'],
  ['NUL', 's\u0000', 'shard_id_charset'],
  ['257 bytes', `s${'x'.repeat(256)}`, 'shard_id_length'],
  ['513 bytes', `s${'x'.repeat(512)}`, 'shard_id_length'],
];
/** Unique per run: suites on the shared NATS server use the default subject prefix. */
const GOOD = `s${crypto.randomUUID()}`;
/** Valid under the default rule (≤ 256), refused by a broker limited to 64 bytes. */
const LONG = `s${'y'.repeat(99)}`;

type Target = 'grpc' | 'in-process' | 'nats';

async function startBroker(maxShardIdBytes?: number): Promise<Broker> {
  const broker = createBroker({
    listen: { host: '127.0.0.1', port: 0 },
    ...(maxShardIdBytes === undefined ? {} : { limits: { maxShardIdBytes } }),
  });
  await broker.start();
  cleanup.push(() => broker.destroy());
  return broker;
}

async function pair(target: Target, maxShardIdBytes?: number) {
  const broker = target === 'nats' ? undefined : await startBroker(maxShardIdBytes);
  const pubsub =
    target === 'nats'
      ? SERVICE_URLS.nats
      : target === 'grpc'
        ? `grpc://127.0.0.1:${broker!.address.port}`
        : broker!;
  const store = createMemoryConsensus();
  const w = countingConsensus(store);
  const r = countingConsensus(store);
  const config = {
    persist_pubsub_reconnect_backoff_ms: 20,
    persist_pubsub_connect_max_backoff_ms: 50,
    // A slow poll: a reader that sees a commit sooner got it through pubsub.
    persist_next_listen_batch_retryer_fixed_sleep_ms: 5000,
  };
  const open = async (callerId: string, consensus: typeof w.consensus) => {
    const c = await createPersistClient({
      consensus,
      pubsub,
      callerId,
      config,
    });
    cleanup.push(() => c.close());
    return c;
  };
  const writer = await open('writer', w.consensus);
  const reader = await open('reader', r.consensus);
  return { broker, writer, reader, writerCounts: w.counts, readerCounts: r.counts };
}

async function metric(client: PersistClient | Broker, name: string, labels: string) {
  const text = await client.registry.metrics();
  const m = text.match(new RegExp(`${name}\\{${labels}\\} (\\d+)`));
  return m ? Number(m[1]) : 0;
}

/** Commits `n` increments through `writer` and checks `reader` saw each without a read. */
async function expectFastPath(
  writer: PersistClient,
  reader: PersistClient,
  readerCounts: { reads: number },
  shardId: string,
  n: number,
): Promise<void> {
  const { wh, rh } = await openWriterAndReader(writer, reader, shardId, cleanup);
  // Let the subscription land and the connect-time catch-up read settle.
  await new Promise((r) => setTimeout(r, 100));
  const before = readerCounts.reads;
  for (let i = 0; i < n; i++) {
    const res = await wh.update((s) => s + 1);
    await rh.waitForSeqno(res.seqno, { signal: AbortSignal.timeout(2000) });
  }
  expect(readerCounts.reads - before).toBe(0);
}

const targets: Target[] = natsOk ? ['grpc', 'in-process', 'nats'] : ['grpc', 'in-process'];

describe.each(targets)('openShard refuses a bad shard id at once (%s)', (target) => {
  it('ShardIdError before Consensus or pubsub sees it; the other shards keep the fast path', async () => {
    const { writer, reader, writerCounts, readerCounts } = await pair(target);
    for (const [what, id, reason] of BAD_IDS) {
      const err = await reader.openShard(id, counterModel).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, what).toBeInstanceOf(ShardIdError);
      expect(err, what).toMatchObject({ code: 'invalid_shard_id', reason });
      expect(readerCounts.keys.has(id), what).toBe(false);
      expect(reader.pubsub.subscribedShards(), what).not.toContain(id);
    }
    expect(writerCounts.keys.size).toBe(0);
    await expectFastPath(writer, reader, readerCounts, GOOD, 5);
  });
});

describe.each<Target>(['grpc', 'in-process'])(
  'a broker with a smaller limit refuses one shard, not the stream (%s)',
  (target) => {
    it('marks that shard refused, keeps every other shard on the fast path, never re-sends it', async () => {
      const { broker, writer, reader, readerCounts } = await pair(target, 64);
      const rl = await reader.openShard(LONG, counterModel);
      cleanup.push(() => rl.close());
      await until(() => rl.pubsubStatus.state === 'refused', 5000, 'refusal');
      const status = rl.pubsubStatus;
      if (status.state !== 'refused') throw new Error('not refused');
      expect(status.reason).toBe('invalid_shard_id');
      expect(status.error).toMatchObject({ code: 'refused' });
      expect(
        await metric(
          reader,
          'persist_pubsub_client_shards_refused_total',
          `transport="${target}",reason="invalid_shard_id"`,
        ),
      ).toBe(1);
      const refusedAtBroker = await metric(
        broker!,
        'persist_pubsub_server_rejections_total',
        'limit="shard_id_length"',
      );
      expect(refusedAtBroker).toBe(1);

      // The stream stayed up: one connection ever, and the other shard is pushed.
      await expectFastPath(writer, reader, readerCounts, GOOD, 5);
      expect(
        await metric(
          reader,
          'persist_pubsub_client_connections_established_total',
          `transport="${target}"`,
        ),
      ).toBe(1);

      // The refused shard still moves, by Consensus (its handles read it on demand).
      const wl = await writer.openShard(LONG, counterModel);
      cleanup.push(() => wl.close());
      const res = await wl.update((s) => s + 1);
      expect((await rl.refresh()).seqno).toBe(res.seqno);
      // The writer's pushes of it are not sent: its own subscription was refused too.
      await until(() => wl.pubsubStatus.state === 'refused', 5000, 'writer refusal');

      // A reconnect re-sends the other subscriptions, not the refused one.
      const beforeReconnect = await metric(
        broker!,
        'persist_pubsub_server_rejections_total',
        'limit="shard_id_length"',
      );
      reader.flags.set({ persist_pubsub_client_enabled: false });
      reader.flags.set({ persist_pubsub_client_enabled: true });
      await until(() => {
        const s = reader.pubsub.status;
        return s.state === 'connected' && s.connections === 2;
      });
      await until(
        () => (broker!.listShards().items.find((s) => s.shardId === GOOD)?.subscribers ?? 0) === 2,
        5000,
        'resubscribed',
      );
      expect(
        await metric(broker!, 'persist_pubsub_server_rejections_total', 'limit="shard_id_length"'),
      ).toBe(beforeReconnect);
      expect(reader.pubsub.subscribedShards()).toContain(LONG);
      expect(rl.pubsubStatus.state).toBe('refused');
    });
  },
);

describe('at the wire', () => {
  it('a client that speaks extensions gets a refusal notice and keeps its stream', async () => {
    const broker = await startBroker(64);
    const raw = openRaw(`127.0.0.1:${broker.address.port}`, {
      headers: { 'persist-pubsub-extensions': '1' },
    });
    cleanup.push(() => raw.close());
    const sub = (id: string) => raw.sendMessage(encodeSubscribe(id, undefined, Date.now(), false));
    sub('orders 2024');
    sub(LONG);
    sub(GOOD);
    await until(() => raw.messages.length === 2, 5000, 'two refusals');
    const notices = raw.messages.map((m) => decodeMessage(m));
    expect(notices).toMatchObject([
      { kind: 'refused', shardId: 'orders 2024', reason: 'invalid_shard_id' },
      { kind: 'refused', shardId: LONG, reason: 'invalid_shard_id' },
    ]);
    await until(() => broker.listShards().items.some((s) => s.shardId === GOOD));
    expect(
      await metric(broker, 'persist_pubsub_server_rejections_total', 'limit="shard_id_charset"'),
    ).toBe(1);
    expect(
      await metric(broker, 'persist_pubsub_server_rejections_total', 'limit="shard_id_length"'),
    ).toBe(1);
    expect(broker.listConnections().items).toHaveLength(1);
  });
});
