import Database from 'better-sqlite3';
import type { Logger } from 'pino';
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
import type {
  CallOptions,
  CasResult,
  Consensus,
  ListKeysOptions,
  ListKeysPage,
  OpenConsensusOptions,
  VersionedData,
} from './types.js';

/** How long a call waits for another connection's write lock. */
export const DEFAULT_SQLITE_BUSY_TIMEOUT_MS = 5000;
/** Durability of a commit: `full` fsyncs the WAL on every commit. */
export const DEFAULT_SQLITE_SYNCHRONOUS: SqliteSynchronous = 'full';

/**
 * `full`: every committed compare-and-set is fsynced before it returns, so it survives power
 * loss. `normal`: in WAL mode a commit survives a crash of the process but the last commits
 * before a power loss or OS crash may be rolled back — after which another writer could commit
 * a different version under the same seqno, which breaks the Consensus contract for anyone who
 * already saw the lost one. Use `normal` only for tests and throwaway state.
 */
export type SqliteSynchronous = 'full' | 'normal';

export interface SqliteConsensusOptions extends OpenConsensusOptions {
  /**
   * How long a call waits for a write lock held by another connection or process before failing
   * with a determinate `unavailable`. The wait does not block the event loop (see
   * `openSqliteConsensus`); opening the file does. @default 5000
   */
  busyTimeoutMs?: number | undefined;
  /** Commit durability (`PRAGMA synchronous`); see `SqliteSynchronous`. @default 'full' */
  synchronous?: SqliteSynchronous | undefined;
}

/**
 * Opens the embedded default Consensus: one SQLite file (better-sqlite3) in WAL mode, safe to
 * share between threads and OS processes on one host. `path` is a file path or `:memory:` (a
 * private database that lives as long as this handle).
 *
 * The table has the Postgres shape, `consensus (shard TEXT, sequence_number INTEGER, data BLOB,
 * PRIMARY KEY (shard, sequence_number))`, with seqnos as 64-bit INTEGERs read and written as
 * BigInt. A compare-and-set is one `INSERT ... SELECT ... WHERE <head> IS <expected>` inside
 * `BEGIN IMMEDIATE`, which takes the database's single write lock first, so concurrent writers
 * in any process are serialized and exactly one wins each seqno.
 *
 * better-sqlite3 is synchronous: every call runs to completion on the calling thread, so an
 * `AbortSignal` is only checked before a call starts. Each call is one short indexed statement
 * (a truncate is one ranged delete) so the lock is held for microseconds; but it is held longer
 * now and then (the holder descheduled, or its commit restarting the WAL, which fsyncs). A call
 * that finds the write lock taken does not wait in SQLite's busy handler, which sleeps on the
 * calling thread (1, 2, 5, 10, … ms, measured at up to 26 % of a writer's wall time with two
 * writer processes at 1,500 commits/s under load, its event loop stopped meanwhile): the
 * connection's busy timeout is 0 once open, and a write (a group of compare-and-sets, a
 * truncate) that gets SQLITE_BUSY waits in the connection's line (`#locked`), retried every
 * `BUSY_RETRY_MS`, for `busyTimeoutMs`.
 *
 * Group commit: the compare-and-sets called in one synchronous run (a writer committing several
 * shards in one wake-up) run in ONE `BEGIN IMMEDIATE` … `COMMIT` at the end of that run (a
 * microtask), each its own insert with its own outcome, in call order: the same results as one
 * transaction each, one after the other, for one lock round and one WAL commit instead of one
 * per call (`bench/results/notes.md`, "The writer's CPU per commit"). Any other call runs the
 * pending ones first, so this handle's calls still apply in the order they were made. A
 * failure of the transaction itself (busy, I/O) fails every compare-and-set in it, classified
 * as for one. `next.data` is read when the group runs, before any caller's `await` resumes.
 */
export async function openSqliteConsensus(
  path: string,
  options: SqliteConsensusOptions = {},
): Promise<Consensus> {
  if (typeof path !== 'string' || path.length === 0 || path.includes('\u0000')) {
    throw new ConsensusError('invalid_argument', 'sqlite path must be a non-empty string');
  }
  const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_SQLITE_BUSY_TIMEOUT_MS;
  if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0 || busyTimeoutMs > 2 ** 31 - 1) {
    throw new ConsensusError(
      'invalid_argument',
      `busyTimeoutMs must be an integer in [0, 2^31-1], got ${String(options.busyTimeoutMs)}`,
    );
  }
  const synchronous = options.synchronous ?? DEFAULT_SQLITE_SYNCHRONOUS;
  if (synchronous !== 'full' && synchronous !== 'normal') {
    throw new ConsensusError(
      'invalid_argument',
      `synchronous must be 'full' or 'normal', got ${String(options.synchronous)}`,
    );
  }
  const logger = options.logger?.child({ component: 'consensus', backend: 'sqlite' });
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: busyTimeoutMs });
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConsensusError('unavailable', `cannot open sqlite database ${path}: ${reason}`, {
      cause: err,
    });
  }
  try {
    const mode = setUp(db, synchronous);
    // From here on a busy lock is waited for by `#locked`, with the event loop free.
    db.pragma('busy_timeout = 0');
    if (mode !== 'wal' && mode !== 'memory') {
      // Still correct (BEGIN IMMEDIATE serializes writers in any journal mode), but readers
      // then wait for writers: e.g. a file system without shared memory.
      logger?.warn({ path, journalMode: mode }, 'sqlite could not switch to WAL mode');
    }
  } catch (err) {
    db.close();
    throw mapError(err, 'open');
  }
  logger?.debug({ path, synchronous, busyTimeoutMs }, 'sqlite consensus opened');
  return new SqliteConsensus(db, logger, busyTimeoutMs);
}

/**
 * Schema and settings. Idempotent and safe when several processes start at once: WAL mode is a
 * persistent property of the file, `CREATE ... IF NOT EXISTS` runs under the write lock (so a
 * racing creator waits for the busy timeout and then finds the table).
 */
function setUp(db: Database.Database, synchronous: SqliteSynchronous): string {
  db.defaultSafeIntegers(true);
  // Switching to WAL needs a moment without other connections; each attempt waits up to the
  // busy timeout, and a file already in WAL mode needs no switch. Returns the mode in force.
  let mode: unknown;
  for (let attempt = 1; ; attempt++) {
    try {
      mode = db.pragma('journal_mode = WAL', { simple: true });
      break;
    } catch (err) {
      if (!isBusy(err) || attempt >= 3) throw err;
    }
  }
  db.pragma(`synchronous = ${synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  db.exec(
    `CREATE TABLE IF NOT EXISTS consensus (
       shard TEXT NOT NULL,
       sequence_number INTEGER NOT NULL,
       data BLOB NOT NULL,
       PRIMARY KEY (shard, sequence_number)
     )`,
  );
  return String(mode).toLowerCase();
}

/**
 * Every statement, each served by the primary-key index (no sort, no temporary table: a
 * listKeys page reads the index in order and holds only the page). Exported for the tests that
 * check the query plans; not part of the package surface.
 */
export const SQLITE_SQL = {
  head: `SELECT sequence_number, data FROM consensus WHERE shard = ?
         ORDER BY sequence_number DESC LIMIT 1`,
  // `x IS ?` is equality that also matches NULL = NULL: the no-entry case needs no 2nd form.
  insertIfHead: `INSERT INTO consensus (shard, sequence_number, data)
                 SELECT ?, ?, ?
                 WHERE (SELECT sequence_number FROM consensus WHERE shard = ?
                        ORDER BY sequence_number DESC LIMIT 1) IS ?`,
  scan: `SELECT sequence_number, data FROM consensus WHERE shard = ? AND sequence_number >= ?
         ORDER BY sequence_number ASC LIMIT ?`,
  deleteBelow: 'DELETE FROM consensus WHERE shard = ? AND sequence_number < ?',
  firstKeys: 'SELECT DISTINCT shard FROM consensus ORDER BY shard LIMIT ?',
  keysAfter: 'SELECT DISTINCT shard FROM consensus WHERE shard > ? ORDER BY shard LIMIT ?',
} as const;

type Row = { sequence_number: unknown; data: unknown };

/** A compare-and-set waiting for its group (`#flushCas`). */
interface PendingCas {
  readonly key: string;
  readonly expected: bigint | null;
  readonly next: VersionedData;
  result: CasResult;
  readonly resolve: (result: CasResult) => void;
  readonly reject: (err: unknown) => void;
}

class SqliteConsensus implements Consensus {
  readonly backend = 'sqlite' as const;
  readonly #db: Database.Database;
  readonly #logger: Logger | undefined;
  #closed = false;
  readonly #head: Database.Statement<[string], Row>;
  readonly #insertIfHead: Database.Statement<[string, bigint, Buffer, string, bigint | null]>;
  readonly #scan: Database.Statement<[string, bigint, number], Row>;
  readonly #delete: Database.Statement<[string, bigint]>;
  readonly #firstKeys: Database.Statement<[number], { shard: unknown }>;
  readonly #keysAfter: Database.Statement<[string, number], { shard: unknown }>;
  readonly #truncate: Database.Transaction<(key: string, seqno: bigint) => number>;
  /** Compare-and-sets called in this synchronous run, committed together (see the header). */
  #pending: PendingCas[] = [];
  readonly #casGroup: Database.Transaction<(group: readonly PendingCas[]) => void>;

  readonly #busyTimeoutMs: number;
  /** Writes waiting for the write lock, oldest first (`#locked`), and the timer that retries them. */
  readonly #line: LockWait[] = [];
  #retryTimer: NodeJS.Timeout | undefined;

  constructor(db: Database.Database, logger: Logger | undefined, busyTimeoutMs: number) {
    this.#db = db;
    this.#logger = logger;
    this.#busyTimeoutMs = busyTimeoutMs;
    this.#head = db.prepare(SQLITE_SQL.head);
    this.#insertIfHead = db.prepare(SQLITE_SQL.insertIfHead);
    this.#scan = db.prepare(SQLITE_SQL.scan);
    this.#delete = db.prepare(SQLITE_SQL.deleteBelow);
    this.#firstKeys = db.prepare(SQLITE_SQL.firstKeys);
    this.#keysAfter = db.prepare(SQLITE_SQL.keysAfter);
    this.#casGroup = db.transaction((group: readonly PendingCas[]): void => {
      for (const c of group) {
        try {
          const { changes } = this.#insertIfHead.run(
            c.key,
            c.next.seqno,
            toBuffer(c.next.data),
            c.key,
            c.expected,
          );
          c.result = changes === 1 ? 'committed' : 'mismatch';
        } catch (err) {
          // A primary-key clash cannot happen when the head check passed; if it ever does, the
          // row was there already: a mismatch. (SQLite undoes the statement, not the group.)
          if (!sqliteCode(err)?.startsWith('SQLITE_CONSTRAINT')) throw err;
          c.result = 'mismatch';
        }
      }
    });
    this.#truncate = db.transaction((key: string, seqno: bigint): number => {
      const head = this.#head.get(key);
      if (head === undefined) {
        throw new ConsensusError('failed_precondition', `truncate of ${key}: it has no entries`, {
          key,
        });
      }
      const headSeqno = readSeqno(head.sequence_number, key);
      if (seqno > headSeqno) {
        throw new ConsensusError(
          'failed_precondition',
          `truncate of ${key} at ${seqno} is above its head ${headSeqno}`,
          { key },
        );
      }
      return this.#delete.run(key, seqno).changes;
    });
  }

  async head(key: string, options?: CallOptions): Promise<VersionedData | undefined> {
    this.#checkInOrder(options);
    validateKey(key);
    const row = await this.#run('head', () => this.#head.get(key), options, key);
    return row === undefined ? undefined : readRow(row, key);
  }

  compareAndSet(
    key: string,
    expected: bigint | null,
    next: VersionedData,
    options?: CallOptions,
  ): Promise<CasResult> {
    try {
      this.#check(options);
      validateCas(key, expected, next);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<CasResult>((resolve, reject) => {
      const c: PendingCas = { key, expected, next, result: 'mismatch', resolve, reject };
      if (this.#pending.push(c) === 1) queueMicrotask(this.#flushCas);
    });
  }

  /** Commits the pending compare-and-sets (one alone as before; several in one transaction). */
  readonly #flushCas = (): void => {
    const group = this.#pending;
    if (group.length === 0) return;
    this.#pending = [];
    if (this.#closed) {
      const closed = new ConsensusError('closed', 'the Consensus is closed');
      for (const c of group) c.reject(closed);
      return;
    }
    const fail = (err: unknown) => {
      for (const c of group) c.reject(mapError(err, 'compareAndSet', c.key));
    };
    const done = () => {
      for (const c of group) c.resolve(c.result);
    };
    let waiting: void | Promise<void>;
    try {
      waiting = this.#locked(() => this.#casGroup.immediate(group), undefined, true);
    } catch (err) {
      fail(err);
      return;
    }
    if (waiting instanceof Promise) waiting.then(done, fail);
    else done();
  };

  async scan(
    key: string,
    from: bigint,
    limit: number,
    options?: CallOptions,
  ): Promise<VersionedData[]> {
    this.#checkInOrder(options);
    validateKey(key);
    validateSeqno(from, 'from');
    validateLimit(limit);
    const rows = await this.#run('scan', () => this.#scan.all(key, from, limit), options, key);
    return rows.map((row) => readRow(row, key));
  }

  async truncate(key: string, seqno: bigint, options?: CallOptions): Promise<number> {
    this.#checkInOrder(options);
    validateKey(key);
    validateSeqno(seqno);
    return this.#run('truncate', () => this.#truncate.immediate(key, seqno), options, key);
  }

  async listKeys(options?: ListKeysOptions): Promise<ListKeysPage> {
    this.#checkInOrder(options);
    const pageSize = validatePageSize(options?.pageSize);
    const after = decodePageToken(options?.pageToken);
    const rows = await this.#run(
      'listKeys',
      () =>
        after === undefined ? this.#firstKeys.all(pageSize) : this.#keysAfter.all(after, pageSize),
      options,
    );
    const keys = rows.map(({ shard }) => {
      if (typeof shard !== 'string') throw new ConsensusError('data_loss', 'a shard is not text');
      return shard;
    });
    const last = keys[keys.length - 1];
    return keys.length === pageSize && last !== undefined
      ? { keys, nextPageToken: encodePageToken(last) }
      : { keys };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // Compare-and-sets already called still commit, as they did when each ran at once.
    this.#flushCas();
    this.#closed = true;
    // Writes still waiting for the lock end now, as closed (determinate: never applied).
    clearTimeout(this.#retryTimer);
    this.#retryLine();
    this.#db.close();
    this.#logger?.debug('sqlite consensus closed');
  }

  #check(options: CallOptions | undefined): void {
    if (this.#closed) throw new ConsensusError('closed', 'the Consensus is closed');
    throwIfAborted(options);
  }

  /** For every call but a compare-and-set: the pending ones go first, in call order. */
  #checkInOrder(options: CallOptions | undefined): void {
    this.#check(options);
    this.#flushCas();
  }

  async #run<T>(
    op: string,
    fn: () => T,
    options: CallOptions | undefined,
    key?: string,
  ): Promise<T> {
    try {
      return await this.#locked(fn, options, op === 'truncate');
    } catch (err) {
      throw mapError(err, op, key);
    }
  }

  /**
   * Runs `fn` (one statement or one transaction); if it finds the write lock taken, it waits in
   * this connection's line (`#line`, first come first served, and every later write goes behind
   * it), tried again every `BUSY_RETRY_MS` with the event loop free in between, for
   * `busyTimeoutMs`. One timer serves the whole line, and once the lock is free the line runs
   * in that one turn, up to the first write that finds it taken again: a hundred shards' writes
   * waiting for the lock cost one attempt per retry, not a hundred. SQLITE_BUSY means nothing
   * was done, so a retry is always safe; a call's last error is its caller's.
   */
  #locked<T>(fn: () => T, options: CallOptions | undefined, writes: boolean): T | Promise<T> {
    // A read needs no write lock: it never waits behind writes (in WAL mode it is rarely busy).
    if (this.#line.length === 0 || !writes) {
      try {
        return fn();
      } catch (err) {
        if (!isBusy(err)) throw err;
      }
    }
    return new Promise<T>((resolve, reject) => {
      this.#line.push({
        run: fn,
        resolve: resolve as (v: unknown) => void,
        reject,
        options,
        // Counted in retries, not read from a clock: timers that fire late make it longer.
        retriesLeft: Math.ceil(this.#busyTimeoutMs / BUSY_RETRY_MS),
      });
      this.#retryTimer ??= setTimeout(this.#retryLine, BUSY_RETRY_MS);
    });
  }

  readonly #retryLine = (): void => {
    this.#retryTimer = undefined;
    while (this.#line.length > 0) {
      const call = this.#line[0]!;
      try {
        this.#check(call.options);
        call.resolve(call.run());
      } catch (err) {
        if (isBusy(err) && call.retriesLeft-- > 0) break;
        call.reject(err);
      }
      this.#line.shift();
    }
    if (this.#line.length > 0) this.#retryTimer = setTimeout(this.#retryLine, BUSY_RETRY_MS);
  };
}

/**
 * How often a write that found the write lock taken tries again, ms. Node's timers have 1 ms
 * granularity; the event loop runs in between, so the wait costs a failed lock attempt per ms.
 */
export const BUSY_RETRY_MS = 1;

/** A write waiting for the write lock. */
interface LockWait {
  run: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  options: CallOptions | undefined;
  retriesLeft: number;
}

/** A zero-copy Buffer view: better-sqlite3 binds Buffers as BLOBs. */
function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function readSeqno(value: unknown, key: string): bigint {
  if (typeof value !== 'bigint') {
    throw new ConsensusError('data_loss', `a sequence_number of ${key} is not an integer`, {
      key,
    });
  }
  return value;
}

function readRow(row: Row, key: string): VersionedData {
  const seqno = readSeqno(row.sequence_number, key);
  if (!Buffer.isBuffer(row.data)) {
    throw new ConsensusError('data_loss', `the data of ${key} at ${seqno} is not a blob`, { key });
  }
  // A plain Uint8Array view of the Buffer better-sqlite3 copied this value into: callers own it.
  return { seqno, data: new Uint8Array(row.data.buffer, row.data.byteOffset, row.data.byteLength) };
}

function sqliteCode(err: unknown): string | undefined {
  if (err instanceof Database.SqliteError) return err.code;
  return undefined;
}

function isBusy(err: unknown): boolean {
  const code = sqliteCode(err);
  return (
    code === 'SQLITE_BUSY' || code?.startsWith('SQLITE_BUSY_') === true || code === 'SQLITE_LOCKED'
  );
}

/**
 * SQLite errors as Consensus errors. Busy/locked means the transaction never started or was
 * rolled back: determinate `unavailable`. An I/O error during a compare-and-set may hit the
 * commit itself: `indeterminate`. Corruption is `data_loss`.
 */
function mapError(err: unknown, op: string, key?: string): unknown {
  const code = sqliteCode(err);
  // Our own errors, and anything that is not SQLite's (a bug), pass through unchanged.
  if (code === undefined) return err;
  const message = err instanceof Error ? err.message : String(err);
  const opts = { key, cause: err };
  if (isBusy(err)) {
    return new ConsensusError('unavailable', `sqlite ${op}: database is busy (${code})`, opts);
  }
  if (
    code === 'SQLITE_CORRUPT' ||
    code === 'SQLITE_NOTADB' ||
    code?.startsWith('SQLITE_CORRUPT_')
  ) {
    return new ConsensusError('data_loss', `sqlite ${op}: ${message} (${code})`, opts);
  }
  if (code?.startsWith('SQLITE_IOERR') && op === 'compareAndSet') {
    return new ConsensusError('indeterminate', `sqlite ${op}: ${message} (${code})`, opts);
  }
  return new ConsensusError(
    'unavailable',
    `sqlite ${op}: ${message}${code ? ` (${code})` : ''}`,
    opts,
  );
}
