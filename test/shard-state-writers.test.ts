/**
 * Racing writers produce one linear history: in one process (several caches and handles) and
 * in several OS processes on SQLite and on Postgres. Every version's diff applies cleanly to
 * the one before it, no write is lost and no seqno is taken twice.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { type Consensus, createMemoryConsensus, openConsensus } from '../src/consensus/index.js';
import { decodeEnvelope } from '../src/shard-state/envelope.js';
import {
  createShardStateCache,
  persistStateModel as model,
  type PersistState,
} from '../src/shard-state/index.js';
import { requireService, SERVICE_URLS } from './support/services.js';

const run = promisify(execFile);
const FIXTURE = join(import.meta.dirname, 'fixtures', 'shard-writer.mjs');
const BUILT = join(import.meta.dirname, '..', 'dist', 'src', 'shard-state', 'index.js');

/** Folds the whole log and checks it is one linear history; returns the final state. */
async function foldLinear(consensus: Consensus, shardId: string, expectedVersions: number) {
  const entries = await consensus.scan(shardId, 0n, 100_000);
  expect(entries.map((e) => e.seqno)).toEqual(
    Array.from({ length: expectedVersions }, (_, i) => BigInt(i + 1)),
  );
  let state = model.initial();
  for (const e of entries) {
    const env = decodeEnvelope(e.data, model.name, e.seqno);
    expect(env.seqnoFrom).toBe(e.seqno - 1n);
    state = model.apply(state, model.decodeDiff(env.diff)); // throws unless it applies cleanly
    if (env.rollup !== undefined) {
      expect(model.equals(model.decodeState(env.rollup), state)).toBe(true);
    }
  }
  return state;
}

const addBatch = (name: string) => (s: PersistState) => {
  const t = (s.upper[0] ?? 0n) + 1n;
  return {
    ...s,
    upper: [t],
    batches: new Map(s.batches).set(name, {
      lower: s.upper,
      upper: [t],
      since: [0n],
      partKeys: [name],
      len: 1n,
    }),
  };
};

describe('racing writers in one process', () => {
  it('several caches and handles writing at once produce one linear history', async () => {
    const consensus = createMemoryConsensus();
    const shardId = `s${randomUUID()}`;
    const caches = [0, 1, 2].map(() =>
      createShardStateCache({ consensus, config: { truncate: false, rollupInterval: 5 } }),
    );
    const handles = await Promise.all(
      caches.flatMap((c) => [c.open<PersistState>(shardId), c.open<PersistState>(shardId)]),
    );
    const perHandle = 10;
    const results = await Promise.all(
      handles.map(async (h, hi) => {
        const out = [];
        for (let i = 0; i < perHandle; i++) out.push(await h.update(addBatch(`h${hi}-${i}`)));
        return out;
      }),
    );
    const total = handles.length * perHandle;
    const seqnos = results.flat().map((r) => r.seqno);
    expect(new Set(seqnos).size).toBe(total);
    const state = await foldLinear(consensus, shardId, total);
    expect(state.batches.size).toBe(total);
    // Handles of one cache share one state object.
    expect(handles[0]!.state).toBe(handles[1]!.state);
    for (const c of caches) c.close();
  });
});

const dir = mkdtempSync(join(tmpdir(), 'shard-state-writers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Races `processes` writer processes on `url` while a reader in this process, which never
 * receives a pushed diff, follows by polling alone (a short first sleep so the test is quick).
 * Returns how many compare-and-sets were lost and retried.
 */
async function raceProcesses(url: string, processes: number, perProcess: number) {
  if (!existsSync(BUILT)) {
    throw new Error(`${BUILT} is missing: the writer processes run built JS (npm test builds it)`);
  }
  const shardId = `s${randomUUID()}`;
  const consensus = await openConsensus(url);
  const reader = createShardStateCache({
    consensus,
    config: { pollFirstSleepMs: 50, pollInitialBackoffMs: 20, pollMaxBackoffMs: 200 },
  });
  try {
    const r = await reader.open<PersistState>(shardId);
    const seen: bigint[] = [];
    const total = processes * perProcess;
    const following = (async () => {
      for await (const v of r.listen()) {
        seen.push(v.seqno);
        if (v.seqno >= BigInt(total)) break;
      }
    })();
    const startAt = String(Date.now() + 1500);
    const outs = await Promise.all(
      Array.from({ length: processes }, (_, p) =>
        run(process.execPath, [FIXTURE, url, shardId, `p${p}`, String(perProcess), startAt], {
          timeout: 60_000,
        }).catch((err: { message: string; stderr?: string }) => {
          throw new Error(`writer p${p} failed: ${err.message}\nstderr: ${err.stderr ?? ''}`);
        }),
      ),
    );
    const reports = outs.map(
      (o) => JSON.parse(o.stdout.trim()) as { seqnos: string[]; attempts: number },
    );
    const all = reports.flatMap((x) => x.seqnos);
    expect(new Set(all).size).toBe(total);
    const state = await foldLinear(consensus, shardId, total);
    expect(state.batches.size).toBe(total);
    // The polling reader caught up with no push at all, seeing seqnos only go up.
    await following;
    for (let i = 1; i < seen.length; i++) expect(seen[i]! > seen[i - 1]!).toBe(true);
    expect(r.seqno).toBe(BigInt(total));
    expect(model.equals(r.state, state)).toBe(true);
    r.close();
    return reports.reduce((a, x) => a + x.attempts, 0) - total;
  } finally {
    reader.close();
    await consensus.close();
  }
}

describe('racing writers in several OS processes', () => {
  it('on SQLite produce one linear history', async () => {
    const lost = await raceProcesses(`sqlite:${join(dir, 'consensus.db')}`, 4, 25);
    console.log(`sqlite: 4 processes x 25 versions, ${lost} lost compare-and-sets retried`);
  }, 60_000);
});

const pg = await requireService('postgres');
describe.skipIf(!pg)('racing writers in several OS processes on Postgres', () => {
  it('produce one linear history', async () => {
    const lost = await raceProcesses(SERVICE_URLS.postgres, 4, 25);
    console.log(`postgres: 4 processes x 25 versions, ${lost} lost compare-and-sets retried`);
  }, 60_000);
});

const redis = await requireService('redis');
describe.skipIf(!redis)('racing writers in several OS processes on Redis', () => {
  it('produce one linear history', async () => {
    const lost = await raceProcesses(SERVICE_URLS.redis, 4, 25);
    console.log(`redis: 4 processes x 25 versions, ${lost} lost compare-and-sets retried`);
  }, 60_000);
});
