import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { requireService, SERVICE_URLS } from '../../test/support/services.js';
import { type Clock, sumMetric, systemClock } from '../util/index.js';
import { describeConformance } from './conformance.test-suite.js';
import { ConsensusError } from './errors.js';
import {
  DEFAULT_POSTGRES_RETRY_BACKOFF_MS,
  MAX_POSTGRES_RETRY_BACKOFF_MS,
  openPostgresConsensus,
} from './postgres.js';
import type { Consensus } from './types.js';

const ok = await requireService('postgres');
const URL = SERVICE_URLS.postgres;
/** A table per run, so parallel suites (and earlier runs) never share rows. */
const run = randomUUID().replaceAll('-', '').slice(0, 12);
const TABLE = `consensus_t_${run}`;
const created: string[] = [TABLE];
/** Every table a test created, with the heads table beside it. */
const createdTables = () => created.flatMap((t) => [t, `${t}_heads`]);

const bytes = (s: string) => new TextEncoder().encode(s);

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function failure(p: Promise<unknown>): Promise<ConsensusError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ConsensusError);
    return err as ConsensusError;
  }
  throw new Error('expected a ConsensusError');
}

/** Waits until a backend of ours is blocked on a lock running `like`; returns its pid. */
async function blockedPid(c: pg.Client, like: string): Promise<number> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const res = await c.query(
      "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND wait_event_type = 'Lock' " +
        'AND query LIKE $1 AND pid <> pg_backend_pid()',
      [`%${like}%`],
    );
    const pid = res.rows[0]?.pid;
    if (typeof pid === 'number') return pid;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no blocked backend running ${like}`);
}

if (ok) {
  afterAll(async () => {
    await admin(async (c) => {
      for (const t of createdTables()) await c.query(`DROP TABLE IF EXISTS "${t}"`);
    });
  });
}

describe.skipIf(!ok)('postgres consensus', () => {
  describeConformance('postgres', () => openPostgresConsensus(URL, { table: TABLE, poolSize: 4 }));

  it('creates its table once when many processes open it at the same moment', async () => {
    const table = `consensus_race_${run}`;
    created.push(table);
    const handles = await Promise.all(
      Array.from({ length: 12 }, () => openPostgresConsensus(URL, { table, poolSize: 1 })),
    );
    try {
      const results = await Promise.all(
        handles.map((h, i) => h.compareAndSet('k', null, { seqno: 0n, data: bytes(`${i}`) })),
      );
      expect(results.filter((r) => r === 'committed')).toHaveLength(1);
      const columns = await admin((c) =>
        c.query(
          'SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ' +
            'ORDER BY ordinal_position',
          [table],
        ),
      );
      expect(columns.rows).toEqual([
        { column_name: 'shard', data_type: 'text' },
        { column_name: 'sequence_number', data_type: 'bigint' },
        { column_name: 'data', data_type: 'bytea' },
      ]);
      const heads = await admin((c) =>
        c.query(`SELECT shard, sequence_number::text AS s FROM "${table}_heads"`),
      );
      expect(heads.rows).toEqual([{ shard: 'k', s: '0' }]);
    } finally {
      await Promise.all(handles.map((h) => h.close()));
    }
  });

  it('takes the table and pool size from the URL, options winning', async () => {
    const table = `consensus_url_${run}`;
    created.push(table);
    const c = await openPostgresConsensus(`${URL}?pool_size=2&table=${table}`);
    try {
      expect(await c.compareAndSet('u', null, { seqno: 1n, data: bytes('x') })).toBe('committed');
      const rows = await admin((a) => a.query(`SELECT shard FROM "${table}"`));
      expect(rows.rows).toEqual([{ shard: 'u' }]);
    } finally {
      await c.close();
    }
  });

  it('rejects bad options naming the field', async () => {
    const cases: [string, Parameters<typeof openPostgresConsensus>[1], RegExp][] = [
      [URL, { table: 'Robert"; DROP TABLE x; --' }, /table/],
      // 58 characters: its heads table's name would be longer than Postgres' 63.
      [URL, { table: 'a'.repeat(58) }, /table/],
      [URL, { poolSize: 0 }, /poolSize/],
      [URL, { statementTimeoutMs: -1 }, /statementTimeoutMs/],
      [`${URL}?pool_size=many`, {}, /pool_size/],
      ['redis://127.0.0.1', {}, /postgres:\/\//],
      ['not a url', {}, /url/],
    ];
    for (const [url, options, field] of cases) {
      const err = await failure(openPostgresConsensus(url, options));
      expect(err.code).toBe('invalid_argument');
      expect(err.message).toMatch(field);
    }
  });

  it('reports a closed port as determinate unavailable', async () => {
    const err = await failure(
      openPostgresConsensus('postgres://postgres@127.0.0.1:1/test', { connectTimeoutMs: 2000 }),
    );
    expect(err.code).toBe('unavailable');
    expect(err.determinate).toBe(true);
  });

  describe('a compare-and-set cut off in flight', () => {
    let handle: Consensus | undefined;
    const open = async (opts: Parameters<typeof openPostgresConsensus>[1] = {}) => {
      await handle?.close();
      handle = await openPostgresConsensus(URL, { table: TABLE, poolSize: 2, ...opts });
      return handle;
    };
    afterAll(() => handle?.close());

    /**
     * Runs `during` while `TABLE` is locked so that a CAS on it blocks. `during` gets a second
     * connection outside the locking transaction (inside one, `pg_stat_activity` is a snapshot
     * taken once).
     */
    async function whileLocked(during: (a: pg.Client) => Promise<void>) {
      await admin(async (locker) => {
        await locker.query('BEGIN');
        await locker.query(`LOCK TABLE "${TABLE}" IN ACCESS EXCLUSIVE MODE`);
        try {
          await admin(during);
        } finally {
          await locker.query('ROLLBACK');
        }
      });
    }

    it('is indeterminate when its backend is terminated', async () => {
      const c = await open();
      const key = `kill-${randomUUID()}`;
      await whileLocked(async (a) => {
        const cas = failure(c.compareAndSet(key, null, { seqno: 0n, data: bytes('x') }));
        const pid = await blockedPid(a, `INSERT INTO "${TABLE}"`);
        await a.query('SELECT pg_terminate_backend($1)', [pid]);
        const err = await cas;
        expect(err.code).toBe('indeterminate');
        expect(err.determinate).toBe(false);
      });
      // The pool replaces the dead connection; the store is usable and the CAS did not apply.
      expect(await c.head(key)).toBeUndefined();
      expect(await c.compareAndSet(key, null, { seqno: 0n, data: bytes('y') })).toBe('committed');
    });

    it('is indeterminate on a statement timeout', async () => {
      const c = await open({ statementTimeoutMs: 300 });
      const key = `timeout-${randomUUID()}`;
      await whileLocked(async () => {
        const err = await failure(c.compareAndSet(key, null, { seqno: 0n, data: bytes('x') }));
        expect(err.code).toBe('indeterminate');
        expect(err.determinate).toBe(false);
      });
      // A read cut off the same way is determinate: it changed nothing.
      await whileLocked(async () => {
        const err = await failure(c.head(key));
        expect(err.code).toBe('unavailable');
        expect(err.determinate).toBe(true);
      });
    });

    it('is indeterminate when its signal fires mid-flight, and the write may land', async () => {
      const c = await open();
      const key = `abort-${randomUUID()}`;
      await whileLocked(async (a) => {
        const ac = new AbortController();
        const cas = failure(
          c.compareAndSet(key, null, { seqno: 0n, data: bytes('x') }, { signal: ac.signal }),
        );
        await blockedPid(a, `INSERT INTO "${TABLE}"`);
        ac.abort(new Error('caller gave up'));
        const err = await cas;
        expect(err.code).toBe('indeterminate');
        expect(err.determinate).toBe(false);
      });
      // The statement was not cancelled: once the lock is gone it commits.
      const deadline = Date.now() + 5000;
      while ((await c.head(key)) === undefined && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      expect((await c.head(key))?.seqno).toBe(0n);
    });
  });

  it('stores bigint seqnos as bigint, never through a double', async () => {
    const c = await openPostgresConsensus(URL, { table: TABLE });
    try {
      const key = `exact-${randomUUID()}`;
      const big = (1n << 62n) + 3n;
      expect(await c.compareAndSet(key, null, { seqno: big, data: bytes('b') })).toBe('committed');
      const res = await admin((a) =>
        a.query(`SELECT sequence_number::text AS s FROM "${TABLE}" WHERE shard = $1`, [key]),
      );
      expect(res.rows).toEqual([{ s: big.toString() }]);
    } finally {
      await c.close();
    }
  });

  it('reports a corrupt row as data_loss', async () => {
    const table = `consensus_corrupt_${run}`;
    created.push(table);
    const c = await openPostgresConsensus(URL, { table });
    try {
      await admin((a) => a.query(`INSERT INTO "${table}" VALUES ('neg', -5, '\\x00'::bytea)`));
      const err = await failure(c.head('neg'));
      expect(err.code).toBe('data_loss');
      expect(err.determinate).toBe(true);
    } finally {
      await c.close();
    }
  });

  it('counts serialization retries in an injected registry shared by several handles', async () => {
    const registry = new Registry();
    // The system clock, recording the retry sleeps asked of it.
    const sleeps: number[] = [];
    const clock: Clock = {
      ...systemClock,
      setTimer(fn, delayMs, o) {
        sleeps.push(delayMs);
        return systemClock.setTimer(fn, delayMs, o);
      },
    };
    const handles = await Promise.all(
      Array.from({ length: 4 }, () =>
        openPostgresConsensus(URL, { table: TABLE, registry, clock }),
      ),
    );
    try {
      const base = `retries-${randomUUID()}`;
      // Racing first writes of neighbouring keys (under serializable, predicate locks on shared
      // index pages made them conflict; row locks do not, so retries are rare or none).
      await Promise.all(
        handles.flatMap((h, i) =>
          Array.from({ length: 25 }, (_, j) =>
            h.compareAndSet(`${base}/${i}/${j}`, null, { seqno: 0n, data: bytes('r') }),
          ),
        ),
      );
      const metric = await registry.getSingleMetricAsString(
        'persist_pubsub_consensus_backend_retries_total',
      );
      expect(metric).toContain('# TYPE persist_pubsub_consensus_backend_retries_total counter');
      let mine = 0;
      let pageToken: string | undefined;
      do {
        const page = await handles[0]!.listKeys({ pageSize: 5000, pageToken });
        mine += page.keys.filter((k) => k.startsWith(base)).length;
        pageToken = page.nextPageToken;
      } while (pageToken !== undefined);
      expect(mine).toBe(100);
      // Every retry sleep is on the documented schedule: 1 ms doubling to 100 ms, ±50%.
      const retries = await sumMetric(registry, 'persist_pubsub_consensus_backend_retries_total');
      expect(sleeps).toHaveLength(retries);
      for (const ms of sleeps) {
        expect(ms).toBeGreaterThanOrEqual(DEFAULT_POSTGRES_RETRY_BACKOFF_MS * 0.5);
        expect(ms).toBeLessThan(MAX_POSTGRES_RETRY_BACKOFF_MS * 1.5);
      }
    } finally {
      await Promise.all(handles.map((h) => h.close()));
    }
  });

  it('lets exactly one of two CASes with the same expected and different next seqnos commit', async () => {
    // Two handles, so the racing statements run on two connections (two backends).
    const [a, b] = await Promise.all(
      [0, 1].map(() => openPostgresConsensus(URL, { table: TABLE, poolSize: 2 })),
    );
    try {
      const key = `race-${randomUUID()}`;
      expect(await a!.compareAndSet(key, null, { seqno: 0n, data: bytes('0') })).toBe('committed');
      let head = 0n;
      for (let i = 0; i < 150; i++) {
        // Both start from the same head; one appends head + 1, the other head + 2.
        const results = await Promise.all([
          a!.compareAndSet(key, head, { seqno: head + 1n, data: bytes(`a${i}`) }),
          b!.compareAndSet(key, head, { seqno: head + 2n, data: bytes(`b${i}`) }),
        ]);
        expect(results.filter((r) => r === 'committed')).toHaveLength(1);
        const winner = results[0] === 'committed' ? head + 1n : head + 2n;
        const seen = await b!.head(key);
        expect(seen?.seqno).toBe(winner);
        head = winner;
      }
      // The first writes race the same way.
      const fresh = `race-first-${randomUUID()}`;
      const firsts = await Promise.all([
        a!.compareAndSet(fresh, null, { seqno: 0n, data: bytes('a') }),
        b!.compareAndSet(fresh, null, { seqno: 5n, data: bytes('b') }),
      ]);
      expect(firsts.filter((r) => r === 'committed')).toHaveLength(1);
      // The log holds exactly the winners, and the heads row agrees with it.
      const rows = await admin((c) =>
        c.query(
          `SELECT (SELECT COUNT(*) FROM "${TABLE}" WHERE shard = $1)::int AS n, ` +
            `(SELECT sequence_number::text FROM "${TABLE}_heads" WHERE shard = $1) AS h`,
          [key],
        ),
      );
      expect(rows.rows).toEqual([{ n: 151, h: head.toString() }]);
    } finally {
      await Promise.all([a?.close(), b?.close()]);
    }
  });

  it('backfills the heads table of a log left by the one-table version', async () => {
    const table = `consensus_old_${run}`;
    created.push(table);
    await admin(async (c) => {
      await c.query(
        `CREATE TABLE "${table}" (shard text NOT NULL, sequence_number bigint NOT NULL, ` +
          'data bytea NOT NULL, PRIMARY KEY (shard, sequence_number))',
      );
      // 'a' at 3..7 (truncated below 3), 'b' at 0, 'c' at 9.
      for (let n = 3; n <= 7; n++) {
        await c.query(`INSERT INTO "${table}" VALUES ('a', $1, $2)`, [n, Buffer.from(`a${n}`)]);
      }
      await c.query(`INSERT INTO "${table}" VALUES ('b', 0, '\\x62'::bytea), ('c', 9, '\\x63')`);
    });
    // Several processes upgrading at once: one creates and fills the heads table.
    const handles = await Promise.all(
      Array.from({ length: 6 }, () => openPostgresConsensus(URL, { table, poolSize: 1 })),
    );
    try {
      const heads = await admin((c) =>
        c.query(`SELECT shard, sequence_number::text AS s FROM "${table}_heads" ORDER BY shard`),
      );
      expect(heads.rows).toEqual([
        { shard: 'a', s: '7' },
        { shard: 'b', s: '0' },
        { shard: 'c', s: '9' },
      ]);
      const c = handles[0]!;
      expect((await c.listKeys()).keys).toEqual(['a', 'b', 'c']);
      expect(await c.compareAndSet('a', null, { seqno: 8n, data: bytes('x') })).toBe('mismatch');
      expect(await c.compareAndSet('a', 6n, { seqno: 8n, data: bytes('x') })).toBe('mismatch');
      expect(await c.compareAndSet('a', 7n, { seqno: 8n, data: bytes('a8') })).toBe('committed');
      expect((await c.head('a'))?.seqno).toBe(8n);
      expect(await c.truncate('c', 9n)).toBe(0);
      expect(await c.truncate('a', 8n)).toBe(5);
      expect((await c.scan('a', 0n, 10)).map((v) => v.seqno)).toEqual([8n]);
    } finally {
      await Promise.all(handles.map((h) => h.close()));
    }
    // Opening again finds the heads table and leaves it alone.
    const again = await openPostgresConsensus(URL, { table });
    try {
      expect((await again.head('a'))?.seqno).toBe(8n);
    } finally {
      await again.close();
    }
  });
});
