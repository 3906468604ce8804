/**
 * `persist-pubsub keys` and `inspect` as real processes on every backend a process can share:
 * SQLite, and the real Postgres and Redis when they are up. Shards are written through the SDK
 * (the default persist model, rolled up every 4 versions, so the log is truncated); `keys`
 * lists them across pages of 2, `inspect` rebuilds the head and an older retained version.
 * (`mem:` is one process's store; `keys` over it is tested in src/cli/consensus-commands.test.ts.)
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPersistClient } from '../src/client/index.js';
import { type PersistState, rollupPhase } from '../src/shard-state/index.js';
import { ensureBuilt, runCli } from './support/run-cli.js';
import { requireService, SERVICE_URLS } from './support/services.js';

const work = mkdtempSync(join(tmpdir(), 'pp-cli-consensus-'));
const pg = await requireService('postgres');
const redis = await requireService('redis');

beforeAll(() => ensureBuilt(), 120_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

const backends = [
  { name: 'sqlite', url: `sqlite:${join(work, 'c.db')}`, up: true },
  { name: 'postgres', url: SERVICE_URLS.postgres, up: pg },
  { name: 'redis', url: SERVICE_URLS.redis, up: redis },
];

/** Writes `versions` commits to each of `count` new shards; returns their ids. */
async function writeShards(url: string, count: number, versions: number): Promise<string[]> {
  const client = await createPersistClient({ consensus: url, shardState: { rollupInterval: 4 } });
  // Shards whose rollups fall at the multiples of 4 (rollup phase 0 modulo 4), as the
  // assertions below count them.
  const ids: string[] = [];
  while (ids.length < count) {
    const id = `s${randomUUID()}`;
    if (rollupPhase(id) % 4n === 0n) ids.push(id);
  }
  try {
    for (const id of ids) {
      const h = await client.openShard<PersistState>(id);
      for (let i = 1; i <= versions; i++) {
        await h.update((s) => ({ ...s, upper: [BigInt(i)], since: [BigInt(i - 1)] }));
      }
      h.close();
    }
  } finally {
    await client.close();
  }
  return ids;
}

for (const b of backends) {
  describe.skipIf(!b.up)(`persist-pubsub keys / inspect on ${b.name} (real processes)`, () => {
    let ids: string[] = [];
    beforeAll(async () => {
      ids = await writeShards(b.url, 5, 10);
    }, 60_000);

    it('keys lists every shard across pages (table and --json), --limit stops early', async () => {
      const r = await runCli(['keys', '--consensus', b.url, '--page-size', '2', '--json']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const keys = r.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { key: string }).key);
      for (const id of ids) expect(keys).toContain(id);
      const table = await runCli(['keys', '--page-size', '3'], {
        env: { PERSIST_PUBSUB_CONSENSUS: b.url },
      });
      expect(table.code).toBe(0);
      const lines = table.stdout.trimEnd().split('\n');
      expect(lines[0]).toBe('KEY');
      for (const id of ids) expect(lines).toContain(id);
      const limited = await runCli(['keys', '--consensus', b.url, '--limit', '3', '--json']);
      expect(limited.code).toBe(0);
      expect(limited.stdout.trim().split('\n')).toHaveLength(3);
    });

    it('inspect prints the head state, what is retained and the newest rollup; --at an older one', async () => {
      const id = ids[0] as string;
      const r = await runCli(['inspect', '--consensus', b.url, id]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const head = JSON.parse(r.stdout) as {
        shard_id: string;
        seqno: string;
        retained: { versions: number; earliest_seqno: string; head_seqno: string };
        state: { upper: string[]; since: string[]; batches: object };
      } & Record<string, unknown>;
      expect(head).toMatchObject({
        shard_id: id,
        model: 'persist',
        seqno: '10',
        retained: { head_seqno: '10', last_rollup_seqno: '8' },
        state: { upper: ['10'], since: ['9'], batches: {} },
      });
      const earliest = BigInt(head.retained.earliest_seqno);
      expect(head.retained.versions).toBe(Number(10n - earliest + 1n));

      const older = await runCli(['inspect', '--consensus', b.url, '--at', '9', id]);
      expect(older.code).toBe(0);
      expect(JSON.parse(older.stdout)).toMatchObject({ seqno: '9', state: { upper: ['9'] } });

      const gone = await runCli(['inspect', '--consensus', b.url, '--at', '1', id]);
      expect(gone.code).toBe(1);
      expect(gone.stderr).toMatch(/seqno 1 of .* is not retained \(retained: \d+\.\.10\)/);
      const none = await runCli(['inspect', '--consensus', b.url, `s${randomUUID()}`]);
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/has no versions/);
    });
  });
}

describe('keys / inspect usage errors', () => {
  it('a missing --consensus, a bad --at or shard id and a missing SQLite file are refused', async () => {
    const missing = await runCli(['keys'], { env: { PERSIST_PUBSUB_CONSENSUS: '' } });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--consensus/);
    const at = await runCli(['inspect', '--consensus', 'sqlite::memory:', '--at', '-1', 's1']);
    expect(at.code).toBe(2);
    expect(at.stderr).toMatch(/--at/);
    const id = await runCli(['inspect', '--consensus', 'sqlite::memory:', '']);
    expect(id.code).toBe(2);
    expect(id.stderr).toMatch(/shard id is empty/);
    const file = await runCli(['keys', '--consensus', `sqlite:${join(work, 'nope.db')}`]);
    expect(file.code).toBe(1);
    expect(file.stderr).toMatch(/no SQLite file at/);
  });
});
