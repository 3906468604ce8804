import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { ConsensusError } from './errors.js';
import { openSqliteConsensus, SQLITE_SQL } from './sqlite.js';

const dir = mkdtempSync(join(tmpdir(), 'persist-pubsub-sqlite-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshPath = () => join(dir, `db-${n++}.sqlite`);
const data = new Uint8Array([1, 2, 3]);

async function failure(p: Promise<unknown>): Promise<ConsensusError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ConsensusError)) throw new Error(`expected a ConsensusError: ${err}`);
  return err;
}

describe('sqlite consensus', () => {
  it('puts the file in WAL mode with the Postgres table shape', async () => {
    const path = freshPath();
    const c = await openSqliteConsensus(path);
    await c.compareAndSet('k', null, { seqno: 1n, data });
    const raw = new Database(path, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    const columns = raw.pragma('table_info(consensus)') as {
      name: string;
      type: string;
      pk: number;
    }[];
    expect(columns.map((col) => [col.name, col.type, col.pk])).toEqual([
      ['shard', 'TEXT', 1],
      ['sequence_number', 'INTEGER', 2],
      ['data', 'BLOB', 0],
    ]);
    // Seqnos are stored as SQLite integers, not text.
    expect(raw.prepare('SELECT typeof(sequence_number) AS t FROM consensus').get()).toEqual({
      t: 'integer',
    });
    raw.close();
    await c.close();
  });

  it('keeps committed versions across close and reopen; schema creation is idempotent', async () => {
    const path = freshPath();
    const a = await openSqliteConsensus(path);
    await a.compareAndSet('k', null, { seqno: 1n, data });
    await a.close();
    const b = await openSqliteConsensus(path, { synchronous: 'normal' });
    expect((await b.head('k'))?.seqno).toBe(1n);
    expect(await b.compareAndSet('k', 1n, { seqno: 2n, data })).toBe('committed');
    await b.close();
  });

  it('fails determinately with unavailable when another connection holds the write lock', async () => {
    const path = freshPath();
    const c = await openSqliteConsensus(path, { busyTimeoutMs: 50 });
    await c.compareAndSet('k', null, { seqno: 0n, data });
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    try {
      const err = await failure(c.compareAndSet('k', 0n, { seqno: 1n, data }));
      expect(err.code).toBe('unavailable');
      expect(err.determinate).toBe(true);
      expect((await failure(c.truncate('k', 0n))).code).toBe('unavailable');
      // WAL readers are not blocked by a writer.
      expect((await c.head('k'))?.seqno).toBe(0n);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect(await c.compareAndSet('k', 0n, { seqno: 1n, data })).toBe('committed');
    await c.close();
  });

  it('waits for another connection’s write lock without blocking the event loop, first come first served', async () => {
    const path = freshPath();
    const c = await openSqliteConsensus(path);
    await c.compareAndSet('a', null, { seqno: 0n, data });
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    const order: string[] = [];
    const first = c.compareAndSet('a', 0n, { seqno: 1n, data }).then((r) => order.push(`a ${r}`));
    // The first (its own group) is in line now; a write made while it waits goes behind it.
    await new Promise((r) => setImmediate(r));
    const second = c
      .compareAndSet('b', null, { seqno: 0n, data })
      .then((r) => order.push(`b ${r}`));
    // The event loop runs while both wait (SQLite's busy handler would have slept on this thread).
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 1));
    expect(order).toEqual([]);
    // WAL readers are not blocked meanwhile.
    expect((await c.head('a'))?.seqno).toBe(0n);
    other.exec('COMMIT');
    other.close();
    await Promise.all([first, second]);
    expect(order).toEqual(['a committed', 'b committed']);
    await c.close();
  });

  it('ends calls still waiting for the lock as closed when it is closed', async () => {
    const path = freshPath();
    const c = await openSqliteConsensus(path);
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    const waiting = failure(c.compareAndSet('k', null, { seqno: 0n, data }));
    await c.close();
    expect((await waiting).code).toBe('closed');
    other.exec('ROLLBACK');
    other.close();
  });

  it('reports rows it cannot read as data_loss', async () => {
    const path = freshPath();
    const c = await openSqliteConsensus(path);
    const raw = new Database(path);
    raw.prepare("INSERT INTO consensus VALUES ('bad-seqno', 'seven', x'00')").run();
    raw.prepare("INSERT INTO consensus VALUES ('bad-data', 1, 'text, not a blob')").run();
    raw.close();
    expect((await failure(c.head('bad-seqno'))).code).toBe('data_loss');
    expect((await failure(c.scan('bad-data', 0n, 10))).code).toBe('data_loss');
    await c.close();
  });

  it('refuses a file that is not a database as data_loss', async () => {
    const path = freshPath();
    writeFileSync(path, 'this is not a sqlite database, but it is long enough to look like one');
    expect((await failure(openSqliteConsensus(path))).code).toBe('data_loss');
  });

  it.each([
    [{ busyTimeoutMs: -1 }, /busyTimeoutMs/],
    [{ busyTimeoutMs: 1.5 }, /busyTimeoutMs/],
    [{ busyTimeoutMs: '5' as unknown as number }, /busyTimeoutMs/],
    [{ synchronous: 'off' as unknown as 'full' }, /synchronous/],
  ])('rejects bad option %j naming the field', async (options, field) => {
    const err = await failure(openSqliteConsensus(freshPath(), options));
    expect(err.code).toBe('invalid_argument');
    expect(err.message).toMatch(field);
  });

  it('serves every statement from the primary-key index, with no sort or temporary table', async () => {
    const path = freshPath();
    await (await openSqliteConsensus(path)).close();
    const raw = new Database(path, { readonly: true });
    const args = ['k', 1n, Buffer.alloc(1), 'k', 1n];
    for (const [name, sql] of Object.entries(SQLITE_SQL)) {
      const params = args.slice(0, sql.split('?').length - 1);
      const plan = (raw.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[])
        .map((row) => row.detail)
        .join('; ');
      // The first listKeys page walks the index from its start (stopping at the LIMIT); every
      // other statement seeks by shard.
      const access =
        name === 'firstKeys'
          ? /SCAN consensus USING COVERING INDEX sqlite_autoindex_consensus_1/
          : /SEARCH consensus USING (COVERING )?INDEX sqlite_autoindex_consensus_1 \(shard/;
      expect(plan, name).toMatch(access);
      expect(plan, name).not.toMatch(/TEMP B-TREE/);
    }
    raw.close();
  });

  it('commits the compare-and-sets of one synchronous run as one group, each with its own outcome, in call order', async () => {
    const c = await openSqliteConsensus(':memory:');
    const calls = [
      c.compareAndSet('a', null, { seqno: 0n, data }),
      c.compareAndSet('b', null, { seqno: 0n, data }),
      c.compareAndSet('a', 0n, { seqno: 1n, data }),
      // Lost: the group's earlier call moved the head of `a` past null.
      c.compareAndSet('a', null, { seqno: 0n, data }),
    ];
    // Any other call runs the pending ones first: it sees them, as it would have one by one.
    const head = c.head('a');
    expect(await Promise.all(calls)).toEqual(['committed', 'committed', 'committed', 'mismatch']);
    expect((await head)?.seqno).toBe(1n);
    expect((await c.head('b'))?.seqno).toBe(0n);
    await c.close();
  });

  it('fails every compare-and-set of a group determinately when the write lock is held', async () => {
    const path = freshPath();
    const c = await openSqliteConsensus(path, { busyTimeoutMs: 20 });
    await c.compareAndSet('a', null, { seqno: 0n, data });
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    try {
      const errs = await Promise.all([
        failure(c.compareAndSet('a', 0n, { seqno: 1n, data })),
        failure(c.compareAndSet('b', null, { seqno: 0n, data })),
      ]);
      expect(errs.map((e) => [e.code, e.determinate])).toEqual([
        ['unavailable', true],
        ['unavailable', true],
      ]);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect(await c.head('b')).toBeUndefined();
    // Called before close: still committed.
    const last = c.compareAndSet('b', null, { seqno: 0n, data });
    await c.close();
    expect(await last).toBe('committed');
    expect((await failure(c.compareAndSet('b', 0n, { seqno: 1n, data }))).code).toBe('closed');
  });

  it("copies data in: changing the caller's array later changes nothing stored", async () => {
    const c = await openSqliteConsensus(':memory:');
    const mine = new Uint8Array([1, 2, 3]);
    await c.compareAndSet('k', null, { seqno: 0n, data: mine });
    mine[0] = 9;
    expect(Array.from((await c.head('k'))?.data ?? [])).toEqual([1, 2, 3]);
    await c.close();
  });

  it('rejects an empty path', async () => {
    expect((await failure(openSqliteConsensus(''))).code).toBe('invalid_argument');
  });
});
