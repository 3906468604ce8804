/**
 * The Postgres (and CockroachDB) Consensus backend.
 *
 * Two tables: the log `consensus (shard, sequence_number, data)`, primary key
 * `(shard, sequence_number)`, as in Materialize's `PostgresConsensus`, and the heads
 * `consensus_heads (shard PRIMARY KEY, sequence_number)`, one row per shard holding its head.
 * The compare-and-set is ONE statement whose row lock on the heads row is the arbiter:
 * `WITH h AS (UPDATE heads SET sequence_number = next WHERE shard = $1 AND sequence_number =
 * expected RETURNING ...) INSERT INTO log SELECT ... FROM h` (for a first write the CTE is an
 * `INSERT INTO heads`). Sessions run at READ COMMITTED on Postgres, which is safe here: of two
 * racing UPDATEs of one heads row the second waits for the first's row lock, then re-checks its
 * WHERE against the committed row (`sequence_number = expected` no longer holds) and updates
 * nothing, so nothing is inserted: a mismatch. Two racing first writes collide on the heads
 * primary key: the second waits, then fails with a unique violation (23505): a mismatch. The
 * arbiter is a row lock, not a predicate lock, so CASes on different shards never conflict
 * (serializable's predicate locks on btree pages aborted them with 40001). Any stronger level
 * is correct too, so a session whose startup options were dropped (a pooler) stays correct.
 * CockroachDB is serializable anyway and supports data-modifying CTEs, so the same SQL runs
 * there; its rare 40001 restarts and deadlocks (40P01) did not apply and are retried a bounded
 * number of times. Every process on a table must run this two-table version: an older one
 * appends to the log without moving the heads row.
 *
 * Error mapping (see `classify`): could not get a connection → determinate `unavailable`;
 * 40001/40P01 → retried, then determinate `unavailable`; the connection lost after a write was
 * sent, a statement timeout (57014) or CockroachDB's "result is ambiguous" (40003) →
 * `indeterminate`. Reads change nothing, so their connection failures are determinate
 * `unavailable`. An abort signal is checked before sending; if it fires while a
 * compare-and-set or truncate is in flight the call rejects at once with `indeterminate` (the
 * statement may still commit), while an in-flight read rejects with `aborted`.
 *
 * The per-call statements (compare-and-set, head, scan, truncate) are named prepared statements,
 * parsed once per connection: Postgres then skips parse and planning on every call (its CPU per
 * compare-and-set about halves) and the client sends no SQL text. At READ COMMITTED a generic
 * plan takes no predicate locks, so it cannot add conflicts (under SERIALIZABLE it did). The
 * compare-and-set, a writer's hot call, and the truncate (a rollup truncates a burst of shards)
 * skip pg's `Query` machinery: `postgres-execute.ts` encodes their Bind/Execute/Sync into one
 * write; their errors are pg's, classified the same way.
 *
 * The SQL avoids Postgres-only syntax (no `ON CONFLICT`, no advisory locks, no `pg_` functions)
 * so the same statements run on CockroachDB.
 */
import pg from 'pg';
import { type Logger, pino } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { type Clock, sleep, systemClock } from '../util/index.js';
import { ConsensusError } from './errors.js';
import {
  decodePageToken,
  encodePageToken,
  throwIfAborted,
  validateCas,
  validateKey,
  validateLimit,
  validatePageSize,
  validateSeqno,
} from './limits.js';
import { executeNamed, executeNamedRow } from './postgres-execute.js';
import { PostgresPool } from './postgres-pool.js';
import { abortedError, raceAbort } from './postgres-redis-abort.js';
import type {
  CallOptions,
  CasResult,
  Consensus,
  ListKeysOptions,
  ListKeysPage,
  OpenConsensusOptions,
  VersionedData,
} from './types.js';

export const DEFAULT_POSTGRES_TABLE = 'consensus';
export const DEFAULT_POSTGRES_POOL_SIZE = 10;
export const DEFAULT_POSTGRES_CONNECT_TIMEOUT_MS = 5_000;
/** Idle connections stay open (0): see `PostgresConsensusOptions.idleTimeoutMs`. */
export const DEFAULT_POSTGRES_IDLE_TIMEOUT_MS = 0;
export const DEFAULT_POSTGRES_STATEMENT_TIMEOUT_MS = 30_000;
export const DEFAULT_POSTGRES_MAX_ATTEMPTS = 50;
/** TCP keepalive probes of a connection start after this long without traffic. */
export const POSTGRES_KEEPALIVE_IDLE_MS = 10_000;
/** The retry backoff stops doubling here. */
export const MAX_POSTGRES_RETRY_BACKOFF_MS = 100;
export const DEFAULT_POSTGRES_RETRY_BACKOFF_MS = 1;

/**
 * Options of `openPostgresConsensus`. The URL may carry `pool_size` and `table` as query
 * parameters (`postgres://host/db?pool_size=20&table=consensus_test`); an option given here
 * wins over the URL. Other query parameters go to `pg` unchanged (`sslmode`, `options`, ...).
 */
export interface PostgresConsensusOptions extends OpenConsensusOptions {
  /**
   * The log table: lower-case letters, digits and `_`, at most 57 characters (its heads table
   * is `<table>_heads`, and Postgres names have at most 63), not starting with a digit. Tests
   * use a table per run. @default 'consensus'
   */
  table?: string | undefined;
  /**
   * Connections in the pool at most, in [1, 1000]; opened as calls need them, then kept.
   * @default 10 (`DEFAULT_POSTGRES_POOL_SIZE`)
   */
  poolSize?: number | undefined;
  /**
   * Close a connection that has been idle this long, in ms; 0 keeps every connection open once
   * opened (a writer's pool between bursts would otherwise reopen them, paying connection
   * setup and the statements' Parse in the next burst's tail). In [0, 86400000]. Until
   * 2026-12 the pool closed idle connections after 10 s (node-postgres's pool default).
   * @default 0 (`DEFAULT_POSTGRES_IDLE_TIMEOUT_MS`)
   */
  idleTimeoutMs?: number | undefined;
  /** How long to wait for a pooled connection before failing `unavailable`. @default 5000 */
  connectTimeoutMs?: number | undefined;
  /**
   * The server's `statement_timeout`; a statement cut off by it is `indeterminate`. The client
   * drops a connection that has answered nothing 5–6 s later still (a black-holed connection;
   * the pool's sweep), also `indeterminate` for a write. @default 30000
   */
  statementTimeoutMs?: number | undefined;
  /**
   * Attempts of a statement that fails with a serialization failure or deadlock (rare:
   * CockroachDB's transaction restarts, a deadlock with an operator's transaction), in
   * [1, 100]; creating the table gets at least 5. @default 50 (`DEFAULT_POSTGRES_MAX_ATTEMPTS`)
   */
  maxAttempts?: number | undefined;
  /**
   * Backoff before the first such retry, in ms, doubling to `MAX_POSTGRES_RETRY_BACKOFF_MS`
   * (100 ms), each sleep jittered ±50%. @default 1 (`DEFAULT_POSTGRES_RETRY_BACKOFF_MS`)
   */
  retryBackoffMs?: number | undefined;
  /** The retry backoff sleeps run on it. @default systemClock */
  clock?: Clock | undefined;
}

type Op = 'head' | 'compare_and_set' | 'scan' | 'truncate' | 'list_keys' | 'schema';

/** Writes may have applied when their connection is lost; reads cannot have. */
const WRITES: ReadonlySet<Op> = new Set(['compare_and_set', 'truncate', 'schema']);

/**
 * Opens a Postgres or CockroachDB Consensus at `url` (`postgres://` or `postgresql://`),
 * creating its table if it does not exist (safe when several processes start at once).
 */
export async function openPostgresConsensus(
  url: string,
  options: PostgresConsensusOptions = {},
): Promise<Consensus> {
  const config = resolveConfig(url, options);
  const logger = (options.logger ?? pino({ level: 'silent' })).child({
    component: 'consensus',
    backend: 'postgres',
    table: config.table,
  });
  const clientConfig: pg.ClientConfig = {
    connectionString: config.connectionString,
    options: config.startupOptions,
    connectionTimeoutMillis: config.connectTimeoutMs,
    // Idle connections stay open (idleTimeoutMs 0): TCP keepalive from 10 s of silence keeps a
    // NAT's or load balancer's mapping alive and finds a dead peer while idle, so that the next
    // statement does not go out on a connection that is gone.
    keepAlive: true,
    keepAliveInitialDelayMillis: POSTGRES_KEEPALIVE_IDLE_MS,
  };
  // A connection that drops emits 'error' on its client, idle or checked out (even after its
  // statement already failed); without a listener it would crash the process. The pool adds
  // its own once the connection is open.
  const onConnectingError = (err: Error) =>
    logger.debug({ err }, 'Postgres connection failed while opening');
  const pool = new PostgresPool<pg.Client>({
    size: config.poolSize,
    connectTimeoutMs: config.connectTimeoutMs,
    // The server's statement_timeout cuts a statement off first; this is for a connection
    // that no longer answers at all.
    readTimeoutMs: config.statementTimeoutMs + 5_000,
    idleTimeoutMs: config.idleTimeoutMs,
    connect: async () => {
      const client = new pg.Client(clientConfig);
      client.on('error', onConnectingError);
      try {
        await client.connect();
      } catch (err) {
        client.end().catch(() => undefined);
        throw err;
      }
      client.off('error', onConnectingError);
      return client;
    },
    // pg's Client.ref/unref (its socket's), missing from @types/pg.
    hold: (client, held) => {
      const c = client as unknown as { ref(): void; unref(): void };
      if (held) c.ref();
      else c.unref();
    },
    destroy: (client, err) => client.connection.stream.destroy(err),
    onError: (err, idle) =>
      idle
        ? logger.warn({ err }, 'idle Postgres connection failed')
        : logger.debug({ err }, 'Postgres connection failed'),
    // The system clock: `clock` is the retry sleeps' (documented so; a test counts them).
    clock: systemClock,
  });
  const consensus = new PostgresConsensus(pool, config, logger, options);
  try {
    await consensus.init();
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  return consensus;
}

interface ResolvedConfig {
  connectionString: string;
  startupOptions: string;
  table: string;
  poolSize: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  maxAttempts: number;
  retryBackoffMs: number;
}

function invalid(field: string, message: string): ConsensusError {
  return new ConsensusError('invalid_argument', `postgres consensus: ${field} ${message}`);
}

function intOption(
  field: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(field, `must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

function resolveConfig(url: string, options: PostgresConsensusOptions): ResolvedConfig {
  if (typeof url !== 'string') throw invalid('url', 'must be a string');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new ConsensusError('invalid_argument', 'postgres consensus: url is not a URL', {
      cause,
    });
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw invalid('url', `must start with postgres:// or postgresql://, got ${parsed.protocol}`);
  }
  const params = parsed.searchParams;
  const urlPool = params.get('pool_size');
  const urlTable = params.get('table');
  const urlOptions = params.get('options');
  params.delete('pool_size');
  params.delete('table');
  params.delete('options');

  const table = options.table ?? urlTable ?? DEFAULT_POSTGRES_TABLE;
  if (typeof table !== 'string' || !/^[a-z_][a-z0-9_]{0,56}$/.test(table)) {
    throw invalid('table', 'must match [a-z_][a-z0-9_]{0,56}');
  }
  let poolSize = options.poolSize;
  if (poolSize === undefined && urlPool !== null) {
    if (!/^\d{1,4}$/.test(urlPool)) throw invalid('pool_size', 'in the URL must be an integer');
    poolSize = Number(urlPool);
  }
  const statementTimeoutMs = intOption(
    'statementTimeoutMs',
    options.statementTimeoutMs,
    DEFAULT_POSTGRES_STATEMENT_TIMEOUT_MS,
    1,
    86_400_000,
  );
  // READ COMMITTED: the heads row lock arbitrates the CAS (see the header); no predicate locks.
  // A space in a `-c` value is escaped with a backslash.
  const startup = [
    urlOptions ?? '',
    '-c default_transaction_isolation=read\\ committed',
    `-c statement_timeout=${statementTimeoutMs}ms`,
  ]
    .filter((s) => s !== '')
    .join(' ');
  return {
    connectionString: parsed.toString(),
    startupOptions: startup,
    table,
    poolSize: intOption('poolSize', poolSize, DEFAULT_POSTGRES_POOL_SIZE, 1, 1000),
    idleTimeoutMs: intOption(
      'idleTimeoutMs',
      options.idleTimeoutMs,
      DEFAULT_POSTGRES_IDLE_TIMEOUT_MS,
      0,
      86_400_000,
    ),
    connectTimeoutMs: intOption(
      'connectTimeoutMs',
      options.connectTimeoutMs,
      DEFAULT_POSTGRES_CONNECT_TIMEOUT_MS,
      1,
      600_000,
    ),
    statementTimeoutMs,
    maxAttempts: intOption(
      'maxAttempts',
      options.maxAttempts,
      DEFAULT_POSTGRES_MAX_ATTEMPTS,
      1,
      100,
    ),
    retryBackoffMs: intOption(
      'retryBackoffMs',
      options.retryBackoffMs,
      DEFAULT_POSTGRES_RETRY_BACKOFF_MS,
      0,
      60_000,
    ),
  };
}

/** Builds the statements once per table; the table name is validated, then quoted. */
function statements(table: string) {
  const t = `"${table}"`;
  const heads = `"${table}_heads"`;
  return {
    create:
      `CREATE TABLE IF NOT EXISTS ${t} (shard text NOT NULL, sequence_number bigint NOT NULL, ` +
      'data bytea NOT NULL, PRIMARY KEY (shard, sequence_number))',
    headsExists:
      'SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() ' +
      'AND table_name = $1::text',
    headsTable: `${table}_heads`,
    createHeads: `CREATE TABLE ${heads} (shard text PRIMARY KEY, sequence_number bigint NOT NULL)`,
    // A log from the one-table version: every shard's head is its largest sequence number.
    backfillHeads:
      `INSERT INTO ${heads} (shard, sequence_number) ` +
      `SELECT shard, MAX(sequence_number) FROM ${t} GROUP BY shard`,
    head:
      `SELECT sequence_number, data FROM ${t} WHERE shard = $1 ` +
      'ORDER BY sequence_number DESC LIMIT 1',
    // The heads row is the arbiter: zero rows updated (the head moved) inserts nothing.
    casExpected:
      `WITH h AS (UPDATE ${heads} SET sequence_number = $2::bigint ` +
      'WHERE shard = $1::text AND sequence_number = $4::bigint RETURNING shard, sequence_number) ' +
      `INSERT INTO ${t} (shard, sequence_number, data) SELECT shard, sequence_number, $3::bytea ` +
      'FROM h',
    // A racing first write waits on the heads primary key, then fails with 23505.
    casFirst:
      `WITH h AS (INSERT INTO ${heads} (shard, sequence_number) VALUES ($1::text, $2::bigint) ` +
      `RETURNING shard, sequence_number) INSERT INTO ${t} (shard, sequence_number, data) ` +
      'SELECT shard, sequence_number, $3::bytea FROM h',
    scan:
      `SELECT sequence_number, data FROM ${t} WHERE shard = $1 AND sequence_number >= $2::bigint ` +
      'ORDER BY sequence_number ASC LIMIT $3::int',
    // One statement: the head it read decides both whether the delete happens and the error.
    // The head only grows, so deleting below a head read a moment ago is still right.
    truncate:
      `WITH h AS (SELECT sequence_number AS head FROM ${heads} WHERE shard = $1::text), ` +
      `d AS (DELETE FROM ${t} WHERE shard = $1::text AND sequence_number < $2::bigint ` +
      'AND (SELECT head FROM h) >= $2::bigint RETURNING 1) ' +
      'SELECT (SELECT head FROM h) AS head, (SELECT COUNT(*) FROM d) AS deleted',
    listFirst: `SELECT shard FROM ${heads} ORDER BY shard LIMIT $1::int`,
    listAfter: `SELECT shard FROM ${heads} WHERE shard > $1::text ORDER BY shard LIMIT $2::int`,
  };
}

type Statements = ReturnType<typeof statements>;

class PostgresConsensus implements Consensus {
  readonly backend = 'postgres' as const;
  readonly #pool: PostgresPool<pg.Client>;
  readonly #config: ResolvedConfig;
  readonly #logger: Logger;
  readonly #sql: Statements;
  readonly #retries: Counter<'backend' | 'op'> | undefined;
  readonly #clock: Clock;
  #closed = false;

  constructor(
    pool: PostgresPool<pg.Client>,
    config: ResolvedConfig,
    logger: Logger,
    options: Pick<PostgresConsensusOptions, 'registry' | 'clock'>,
  ) {
    this.#pool = pool;
    this.#config = config;
    this.#logger = logger;
    this.#sql = statements(config.table);
    this.#retries = options.registry === undefined ? undefined : retriesCounter(options.registry);
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Creates the log and heads tables, racing other processes safely. A log left by the
   * one-table version gets its heads table created and filled from it in one transaction, so
   * no process ever sees the heads table without the rows.
   */
  async init(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#run('schema', undefined, async (c) => {
          // Several statements on one connection: each restarts the read timeout.
          const q = (text: string, values?: unknown[]) => {
            this.#pool.stamp(c);
            return c.query(text, values);
          };
          await q(this.#sql.create);
          const exists = await q(this.#sql.headsExists, [this.#sql.headsTable]);
          if (exists.rows.length > 0) return exists;
          return transaction(q, async () => {
            await q(this.#sql.createHeads);
            return q(this.#sql.backfillHeads);
          });
        });
        return;
      } catch (err) {
        // Two processes creating a table at once on Postgres: one can fail on the catalog's
        // unique index (23505), find the table created under it (42P07), or find the table's
        // row type created under it (42710, duplicate_object from TypeCreate). The table exists
        // now; run the step again, which finds it.
        const code = pgCode(err instanceof ConsensusError ? err.cause : err);
        if ((code === '23505' || code === '42P07' || code === '42710') && attempt < 5) continue;
        throw err;
      }
    }
  }

  async head(key: string, options?: CallOptions): Promise<VersionedData | undefined> {
    this.#check(options);
    validateKey(key);
    const res = await this.#run('head', options, (c) =>
      c.query({ name: 'head', text: this.#sql.head, values: [key] }),
    );
    const row = res.rows[0];
    return row === undefined ? undefined : toVersion(row, key);
  }

  async compareAndSet(
    key: string,
    expected: bigint | null,
    next: VersionedData,
    options?: CallOptions,
  ): Promise<CasResult> {
    this.#check(options);
    validateCas(key, expected, next);
    // The hot statement, run without pg's Query (see postgres-execute.ts).
    const [name, text, values] =
      expected === null
        ? (['cas_first', this.#sql.casFirst, [key, next.seqno.toString(), next.data]] as const)
        : ([
            'cas_expected',
            this.#sql.casExpected,
            [key, next.seqno.toString(), next.data, expected.toString()],
          ] as const);
    try {
      const count = await this.#run('compare_and_set', options, (c) =>
        executeNamed(c, name, text, values),
      );
      return count === 1 ? 'committed' : 'mismatch';
    } catch (err) {
      // Someone inserted next.seqno first: the head moved past expected. A lost race.
      if (err instanceof ConsensusError && pgCode(err.cause) === '23505') return 'mismatch';
      throw err;
    }
  }

  async scan(
    key: string,
    from: bigint,
    limit: number,
    options?: CallOptions,
  ): Promise<VersionedData[]> {
    this.#check(options);
    validateKey(key);
    validateSeqno(from, 'from');
    validateLimit(limit);
    const res = await this.#run('scan', options, (c) =>
      c.query({ name: 'scan', text: this.#sql.scan, values: [key, from.toString(), limit] }),
    );
    return res.rows.map((row) => toVersion(row, key));
  }

  async truncate(key: string, seqno: bigint, options?: CallOptions): Promise<number> {
    this.#check(options);
    validateKey(key);
    validateSeqno(seqno);
    // Like the compare-and-set, without pg's Query (a rollup truncates a burst of shards).
    const fields = await this.#run('truncate', options, (c) =>
      executeNamedRow(c, 'truncate', this.#sql.truncate, [key, seqno.toString()]),
    );
    if (fields === undefined) throw dataLoss(key, 'truncate returned no row');
    const row = { head: fields[0], deleted: fields[1] };
    if (row.head === null) {
      throw new ConsensusError('failed_precondition', `truncate of ${key}: it has no entries`, {
        key,
      });
    }
    const head = parseSeqno(row.head, key);
    if (seqno > head) {
      throw new ConsensusError(
        'failed_precondition',
        `truncate of ${key} at ${seqno} is above its head ${head}`,
        { key },
      );
    }
    const deleted = Number(row.deleted);
    if (!Number.isSafeInteger(deleted) || deleted < 0) {
      throw dataLoss(key, `truncate reported ${String(row.deleted)} rows deleted`);
    }
    return deleted;
  }

  async listKeys(options?: ListKeysOptions): Promise<ListKeysPage> {
    this.#check(options);
    const pageSize = validatePageSize(options?.pageSize);
    const after = decodePageToken(options?.pageToken);
    if (after !== undefined && (after === '' || !after.isWellFormed() || after.includes('\0'))) {
      throw new ConsensusError('invalid_argument', 'pageToken is malformed');
    }
    const res = await this.#run('list_keys', options, (c) =>
      after === undefined
        ? c.query(this.#sql.listFirst, [pageSize])
        : c.query(this.#sql.listAfter, [after, pageSize]),
    );
    const keys = res.rows.map((row) => {
      const shard = (row as { shard: unknown }).shard;
      if (typeof shard !== 'string') throw dataLoss(undefined, 'a shard is not text');
      return shard;
    });
    const last = keys[keys.length - 1];
    return keys.length === pageSize && last !== undefined
      ? { keys, nextPageToken: encodePageToken(last) }
      : { keys };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }

  #check(options: CallOptions | undefined): void {
    if (this.#closed) throw new ConsensusError('closed', 'the Consensus is closed');
    throwIfAborted(options);
  }

  /**
   * Runs one statement on a pooled connection: retries serialization failures and deadlocks
   * (they did not apply), maps every other failure to a `ConsensusError`.
   */
  async #run<T>(
    op: Op,
    options: CallOptions | undefined,
    send: (client: pg.Client) => Promise<T>,
  ): Promise<T> {
    let backoffMs = this.#config.retryBackoffMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#once(op, options, send);
      } catch (err) {
        if (
          !(err instanceof ConsensusError) ||
          !err.determinate ||
          attempt >= this.#maxAttempts(op)
        )
          throw err;
        if (!isRetryable(err.cause)) throw err;
        this.#retries?.inc({ backend: 'postgres', op });
        this.#logger.debug(
          { op, attempt, code: pgCode(err.cause) },
          'retrying a serialization failure',
        );
        // Kept alive (sleep's default): between attempts this timer may be the only handle left
        // (the pool's idle sockets are unref'd), and the caller is awaiting the call.
        await sleep(backoffMs * (0.5 + Math.random()), {
          clock: this.#clock,
          signal: options?.signal,
          abortError: abortedError,
        });
        backoffMs = Math.min(backoffMs * 2, MAX_POSTGRES_RETRY_BACKOFF_MS);
      }
    }
  }

  #maxAttempts(op: Op): number {
    return op === 'schema' ? Math.max(this.#config.maxAttempts, 5) : this.#config.maxAttempts;
  }

  async #once<T>(
    op: Op,
    options: CallOptions | undefined,
    send: (client: pg.Client) => Promise<T>,
  ): Promise<T> {
    if (this.#closed) throw new ConsensusError('closed', 'the Consensus is closed');
    throwIfAborted(options);
    const signal = options?.signal;
    const pool = this.#pool;
    let client: pg.Client;
    try {
      // At once when a connection is idle (the usual case): no promise to race.
      const got = pool.acquire();
      client =
        got instanceof Promise ? await raceAbort(got, signal, (late) => pool.release(late)) : got;
    } catch (err) {
      if (err instanceof ConsensusError) throw err;
      if (this.#closed) throw new ConsensusError('closed', 'the Consensus is closed');
      throw new ConsensusError('unavailable', `postgres ${op}: cannot get a connection`, {
        cause: err,
      });
    }
    try {
      throwIfAborted(options);
    } catch (err) {
      pool.release(client);
      throw err;
    }
    const query = send(client);
    // Release exactly once, when the statement settles (even after an abort gave up on it).
    query.then(
      () => pool.release(client),
      (err) => pool.release(client, breaksConnection(err) ? asError(err) : undefined),
    );
    try {
      return await raceAbort(query, signal, () => undefined, WRITES.has(op));
    } catch (err) {
      if (err instanceof ConsensusError) throw err;
      throw classify(op, err);
    }
  }
}

/** Runs `body` in a transaction on the connection `q` queries, rolled back if it fails. */
async function transaction(
  q: (text: string) => Promise<pg.QueryResult>,
  body: () => Promise<pg.QueryResult>,
): Promise<pg.QueryResult> {
  await q('BEGIN');
  try {
    const res = await body();
    await q('COMMIT');
    return res;
  } catch (err) {
    // If the rollback fails too, its error (a lost connection) is the one to report: the pool
    // must drop the connection rather than reuse it mid-transaction.
    await q('ROLLBACK');
    throw err;
  }
}

function pgCode(err: unknown): string | undefined {
  return err instanceof pg.DatabaseError ? err.code : undefined;
}

function isRetryable(err: unknown): boolean {
  const code = pgCode(err);
  return code === '40001' || code === '40P01';
}

/** SQLSTATEs after which the outcome of a sent statement is unknown. */
function isAmbiguous(code: string): boolean {
  return (
    code === '57014' || // query_canceled: statement_timeout
    code === '40003' || // statement_completion_unknown (CockroachDB: "result is ambiguous")
    code.startsWith('08') || // connection exception
    code === '57P01' || // admin_shutdown (pg_terminate_backend)
    code === '57P02' || // crash_shutdown
    code === 'XX000' // internal_error
  );
}

/** Errors after which the connection must not go back to the pool. */
function breaksConnection(err: unknown): boolean {
  const code = pgCode(err);
  return code === undefined || isAmbiguous(code);
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Maps a failure of a statement that was sent. */
function classify(op: Op, err: unknown): ConsensusError {
  const code = pgCode(err);
  const write = WRITES.has(op);
  if (code === undefined || isAmbiguous(code)) {
    // No SQLSTATE: the socket failed or the client-side timeout fired.
    return write
      ? new ConsensusError(
          'indeterminate',
          `postgres ${op}: the outcome is unknown (${code ?? asError(err).message})`,
          { cause: err },
        )
      : new ConsensusError('unavailable', `postgres ${op} failed (${code ?? 'connection'})`, {
          cause: err,
        });
  }
  if (code === '23505' || code === '40001' || code === '40P01') {
    return new ConsensusError('unavailable', `postgres ${op}: ${code}, not applied`, {
      cause: err,
    });
  }
  if (code.startsWith('22')) {
    return new ConsensusError('data_loss', `postgres ${op}: data exception ${code}`, {
      cause: err,
    });
  }
  return new ConsensusError('unavailable', `postgres ${op} failed with ${code}`, { cause: err });
}

function dataLoss(key: string | undefined, message: string): ConsensusError {
  return new ConsensusError('data_loss', `postgres consensus: ${message}`, { key });
}

function parseSeqno(value: unknown, key: string): bigint {
  const text = typeof value === 'string' ? value : typeof value === 'number' ? String(value) : '';
  if (!/^\d{1,19}$/.test(text)) throw dataLoss(key, `bad sequence_number ${String(value)}`);
  const seqno = BigInt(text);
  try {
    return validateSeqno(seqno);
  } catch {
    throw dataLoss(key, `sequence_number ${text} is out of range`);
  }
}

function toVersion(row: unknown, key: string): VersionedData {
  const { sequence_number, data } = row as { sequence_number: unknown; data: unknown };
  if (!(data instanceof Uint8Array)) throw dataLoss(key, 'data is not bytea');
  return { seqno: parseSeqno(sequence_number, key), data: new Uint8Array(data) };
}

const RETRIES_METRIC = 'persist_pubsub_consensus_backend_retries_total';

/** One counter per registry, shared by every handle that reports to it. */
function retriesCounter(registry: Registry): Counter<'backend' | 'op'> {
  const existing = registry.getSingleMetric(RETRIES_METRIC);
  if (existing !== undefined) return existing as Counter<'backend' | 'op'>;
  return new Counter({
    name: RETRIES_METRIC,
    help: 'Consensus statements retried after a determinate failure (serialization, deadlock).',
    labelNames: ['backend', 'op'],
    registers: [registry],
  });
}
