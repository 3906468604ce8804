/**
 * Bad input to the SDK: random bytes pushed as diffs (directly into a shard-state cache and
 * end to end through a real broker from a rogue peer), and malformed rows written straight into
 * Consensus tables (SQLite and Postgres). Nothing throws out of the SDK or crashes; each case
 * is refused with a clear error and counted in a metric; readers stay equal to the fold of the
 * (good part of the) log.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import Database from 'better-sqlite3';
import pg from 'pg';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../../src/broker/index.js';
import { createFlags, createPersistClient } from '../../src/client/index.js';
import { type Consensus, createMemoryConsensus, openConsensus } from '../../src/consensus/index.js';
import { ProtoPubSubMessageSchema } from '../../src/gen/mz_persist_client/internal/service/pubsub_pb.js';
import { encodeEnvelope } from '../../src/shard-state/envelope.js';
import {
  createShardStateCache,
  persistStateModel,
  type ShardStateError,
} from '../../src/shard-state/index.js';
import { createChecker } from '../support/checker.js';
import { chainModel, chainStep } from '../support/fault-model.js';
import { createRng } from '../support/fault-rng.js';
import { openRaw, until } from '../support/grpc-clients.js';
import { requireService, SERVICE_URLS } from '../support/services.js';

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const shard = () => `s${randomUUID()}`;
const pgUp = await requireService('postgres');
let casesRun = 0;
let refusedAtOpen = 0;
let stoppedAtGood = 0;

async function counter(registry: Registry, name: string, labels: Record<string, string> = {}) {
  const m = registry.getSingleMetric(name);
  if (m === undefined) return 0;
  const v = await m.get();
  return v.values
    .filter((x) => Object.entries(labels).every(([k, want]) => String(x.labels[k]) === want))
    .reduce((a, x) => a + x.value, 0);
}

const randomBytes = (rng: ReturnType<typeof createRng>, max: number) =>
  Uint8Array.from({ length: rng.int(0, max) }, () => rng.int(0, 255));

beforeAll(() => console.log(`[fuzz] FUZZ_SEED=${SEED}`));
afterAll(() =>
  console.log(
    `[fuzz] SDK and Consensus-row cases run: ${casesRun} (malformed rows: ${refusedAtOpen} refused at open, ${stoppedAtGood} stopped at the last good version)`,
  ),
);

describe('random bytes as diffs', () => {
  it.each([
    ['persist model', persistStateModel],
    ['chain model', chainModel],
  ] as const)('into a shard-state cache (%s): refused, counted, state intact', async (_, model) => {
    const rng = createRng(SEED).fork(`cache-${model.name}`);
    const consensus = createMemoryConsensus();
    const registry = new Registry();
    const cache = createShardStateCache({
      consensus,
      registry,
      config: { truncate: false, reorderWindowMs: 1 },
    });
    const writer = createShardStateCache({ consensus, config: { truncate: false } });
    const id = shard();
    try {
      const h = await cache.open(id, model as never);
      const w = await writer.open(id, chainModel);
      if (model === (chainModel as unknown)) {
        for (let i = 1; i <= 3; i++) await w.update(chainStep('w', i));
        await h.refresh();
      }
      const before = h.snapshot();
      const n = 300;
      const outcomes = new Map<string, number>();
      for (let i = 0; i < n; i++) {
        const seqno = h.seqno + 1n; // the next seqno: the cache must try to decode and apply it
        const out = cache.receiveDiff(id, seqno, randomBytes(rng, 200));
        outcomes.set(out, (outcomes.get(out) ?? 0) + 1);
      }
      casesRun += n;
      // Random bytes never apply (a JSON diff of the chain model could, by chance: not at this size).
      expect(outcomes.get('applied') ?? 0).toBe(0);
      expect(outcomes.get('refetch')).toBe(n);
      expect(
        await counter(registry, 'persist_pubsub_state_diff_invalid_total', { shard: id }),
      ).toBe(n);
      casesRun++;
      // Bytes that are no envelope are labelled decode; nearly all random ones are.
      const byReason = async (reason: string) =>
        counter(registry, 'persist_pubsub_state_diff_invalid_total', { shard: id, reason });
      expect(await byReason('decode')).toBeGreaterThan(n / 2);
      // A well-formed envelope pushed under another seqno is labelled seqno.
      const wrong = encodeEnvelope({
        seqnoFrom: h.seqno + 5n,
        seqnoTo: h.seqno + 6n,
        wallTimeMs: 0,
        diff: new Uint8Array(),
        rollup: undefined,
        model: model.name,
      });
      expect(cache.receiveDiff(id, h.seqno + 1n, wrong)).toBe('refetch');
      expect(await byReason('seqno')).toBeGreaterThan(0);
      await h.refresh();
      expect(h.seqno).toBe(before.seqno);
      expect(model.equals(h.state as never, before.state as never)).toBe(true);
      h.close();
      w.close();
    } finally {
      cache.close();
      writer.close();
    }
  });

  it('from a rogue peer through a real broker: readers stay equal to the log', async () => {
    const rng = createRng(SEED).fork('rogue');
    const broker: Broker = createBroker({ listen: { host: '127.0.0.1', port: 0 } });
    await broker.start();
    const url = `grpc://127.0.0.1:${broker.address.port}`;
    const consensus = createMemoryConsensus();
    const id = shard();
    const checker = createChecker(chainModel, consensus);
    const stop = new AbortController();
    const registry = new Registry();
    const flags = createFlags({ persist_next_listen_batch_retryer_clamp_ms: 500 });
    const reader = await createPersistClient({ consensus, pubsub: url, registry, config: flags });
    const writer = await createPersistClient({
      consensus,
      pubsub: url,
      config: flags,
      shardState: { truncate: false },
    });
    // The rogue peer: a raw HTTP/2 call, so every junk push is written at once, in order.
    const rogue = openRaw(`127.0.0.1:${broker.address.port}`);
    const push = (seqno: bigint, diff: Uint8Array) =>
      rogue.sendMessage(
        toBinary(
          ProtoPubSubMessageSchema,
          create(ProtoPubSubMessageSchema, {
            message: { case: 'pushDiff', value: { shardId: id, seqno, diff } },
          }),
        ),
      );
    try {
      const rh = await reader.openShard(id, chainModel);
      const wh = await writer.openShard(id, chainModel);
      const following = checker.follow('reader', rh, stop.signal);
      await until(
        () =>
          reader.pubsub.status.state === 'connected' &&
          writer.pubsub.status.state === 'connected' &&
          broker
            .listShards({ pageSize: 1000 })
            .items.some((x) => x.shardId === id && x.subscribers >= 2),
        20_000,
        'reader and writer subscribed',
      );
      const n = 200;
      for (let i = 1; i <= 20; i++) {
        // Junk at the next seqno and beyond, before the real diff lands.
        for (let k = 0; k < n / 20; k++) {
          push(wh.seqno + BigInt(rng.int(1, 3)), randomBytes(rng, 100));
        }
        await new Promise((r) => setTimeout(r, 10));
        await wh.update(chainStep('w', i));
      }
      casesRun += n;
      await checker.awaitHead(id, [{ name: 'reader', handle: rh }], 20_000);
      stop.abort();
      await following;
      const report = await checker.verify();
      expect(report.divergences).toEqual([]);
      const invalid = await counter(registry, 'persist_pubsub_state_diff_invalid_total');
      const stale = await counter(registry, 'persist_pubsub_state_diff_stale_total');
      console.log(`[fuzz] rogue diffs: invalid=${invalid} stale=${stale} of ${n}`);
      expect(invalid).toBeGreaterThan(0);
      rh.close();
      wh.close();
    } finally {
      stop.abort();
      rogue.close();
      await reader.close();
      await writer.close();
      broker.destroy();
    }
  }, 90_000);
});

/** The malformed rows written under a shard whose versions 1..3 are good. */
function malformedRows(
  rng: ReturnType<typeof createRng>,
): { name: string; data: Uint8Array; diffApplies?: boolean }[] {
  const env = (over: Partial<Parameters<typeof encodeEnvelope>[0]>) =>
    encodeEnvelope({
      seqnoFrom: 3n,
      seqnoTo: 4n,
      wallTimeMs: 0,
      diff: chainModel.encodeDiff({ w: 'x', i: 4 }),
      rollup: undefined,
      model: chainModel.name,
      ...over,
    });
  return [
    { name: 'random bytes', data: randomBytes(rng, 300) },
    { name: 'empty', data: new Uint8Array() },
    { name: 'another model', data: env({ model: 'someone-else.v1' }) },
    { name: 'wrong seqno in the envelope', data: env({ seqnoFrom: 6n, seqnoTo: 7n }) },
    { name: 'diff that does not decode', data: env({ diff: randomBytes(rng, 50) }) },
    // A reader that follows applies the (good) diff; one that opens needs the rollup.
    {
      name: 'rollup that does not decode',
      data: env({ rollup: Uint8Array.of(0xff, 0, 1) }),
      diffApplies: true,
    },
    {
      name: 'truncated envelope',
      data: env({}).subarray(0, 7),
    },
  ];
}

interface RowBackend {
  url: string;
  insert(shardId: string, seqno: number, data: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

async function checkMalformedRows(backend: RowBackend): Promise<void> {
  const rng = createRng(SEED).fork(`rows-${backend.url.slice(0, 8)}`);
  const consensus: Consensus = await openConsensus(backend.url);
  try {
    for (const row of malformedRows(rng)) {
      const id = shard();
      const registry = new Registry();
      const writer = createShardStateCache({ consensus, config: { truncate: false } });
      const w = await writer.open(id, chainModel);
      for (let i = 1; i <= 3; i++) await w.update(chainStep('w', i));
      const good = w.snapshot();
      // A reader that is open already (at 3) and one that opens after the bad row landed.
      const liveRegistry = new Registry();
      const live = createShardStateCache({
        consensus,
        registry: liveRegistry,
        config: { truncate: false },
      });
      const lh = await live.open(id, chainModel);
      await backend.insert(id, 4, row.data);
      await lh.refresh();
      casesRun++;
      stoppedAtGood++;
      const liveErrors = await counter(liveRegistry, 'persist_pubsub_state_read_errors_total', {
        code: 'corrupt_log',
      });
      if (row.diffApplies === true) {
        expect(lh.seqno, row.name).toBe(4n);
        expect(
          chainModel.equals(lh.state, chainModel.apply(good.state, { w: 'x', i: 4 })),
          row.name,
        ).toBe(true);
        expect(liveErrors, row.name).toBe(0);
      } else {
        // The live reader meets the bad row while catching up: it stays at 3, counted.
        expect(lh.seqno, row.name).toBe(3n);
        expect(chainModel.equals(lh.state, good.state), row.name).toBe(true);
        expect(liveErrors, row.name).toBeGreaterThan(0);
      }
      lh.close();
      live.close();
      const cache = createShardStateCache({ consensus, registry, config: { truncate: false } });
      const h = await cache
        .open(id, chainModel)
        .catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
      casesRun++;
      if (h instanceof Error) {
        refusedAtOpen++;
        // Opening refused the log with a typed error that names the version.
        expect((h as ShardStateError).code, row.name).toBe('corrupt_log');
        expect(h.message, row.name).toMatch(/version 4|rollup 4/);
      } else {
        stoppedAtGood++;
        expect(h.seqno, row.name).toBe(3n);
        h.close();
      }
      expect(
        await counter(registry, 'persist_pubsub_state_read_errors_total', { code: 'corrupt_log' }),
        row.name,
      ).toBeGreaterThan(0);
      w.close();
      writer.close();
      cache.close();
    }
  } finally {
    await consensus.close();
    await backend.close();
  }
}

describe('malformed rows in Consensus', () => {
  it('SQLite: each malformed row is a clear corrupt_log error and a metric', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fuzz-rows-'));
    const file = join(dir, 'c.db');
    const url = `sqlite:${file}`;
    // Create the table through the backend first.
    await (await openConsensus(url)).close();
    const db = new Database(file);
    await checkMalformedRows({
      url,
      async insert(shardId, seqno, data) {
        db.prepare('INSERT INTO consensus (shard, sequence_number, data) VALUES (?, ?, ?)').run(
          shardId,
          seqno,
          Buffer.from(data),
        );
      },
      async close() {
        db.close();
        rmSync(dir, { recursive: true, force: true });
      },
    });
  });

  it.skipIf(!pgUp)(
    'Postgres: each malformed row is a clear corrupt_log error and a metric',
    async () => {
      const table = `fuzz_rows_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
      const url = `${SERVICE_URLS.postgres}${SERVICE_URLS.postgres.includes('?') ? '&' : '?'}table=${table}`;
      await (await openConsensus(url)).close();
      const client = new pg.Client({ connectionString: SERVICE_URLS.postgres });
      await client.connect();
      await checkMalformedRows({
        url,
        async insert(shardId, seqno, data) {
          // As a writer's compare-and-set would: the log row and the heads row together.
          await client.query(
            `WITH h AS (UPDATE ${table}_heads SET sequence_number = $2 WHERE shard = $1 ` +
              `RETURNING shard) INSERT INTO ${table} (shard, sequence_number, data) ` +
              'SELECT shard, $2, $3 FROM h',
            [shardId, seqno, Buffer.from(data)],
          );
        },
        async close() {
          await client.query(`DROP TABLE IF EXISTS ${table}`);
          await client.query(`DROP TABLE IF EXISTS ${table}_heads`);
          await client.end();
        },
      });
    },
  );
});
