/**
 * One named prepared statement that returns no rows (the compare-and-set) or one row (the
 * truncate, `executeNamedRow`: its columns as text, since no Describe is sent), run on a pg client
 * as a pg "submittable" (`client.query(submittable)`, pg's own interface for custom queries)
 * instead of pg's `Query`: the Parse (on the connection's first use of the statement), Bind,
 * Execute and Sync are encoded here into ONE buffer and one socket write, with no Describe, so
 * the answer is BindComplete, CommandComplete and ReadyForQuery; no `Query`, `Result`, config
 * clone or four corked writes per call (a fifth to a third of the main thread's instructions
 * per compare-and-set: bench/results/notes.md "The Postgres writer's client").
 *
 * pg still owns the connection (startup, TLS, authentication), parses the answer (an
 * ErrorResponse arrives as `pg.DatabaseError`, with its SQLSTATE), applies its per-query read
 * timeout (it wraps `callback`), and keeps its record of the statements parsed on each
 * connection (`parsedStatements`, set when ParseComplete arrives for a query with this `name`),
 * which this reads to decide whether to send the Parse, exactly as pg's `Query` does.
 */
import type pg from 'pg';

/** A parameter: text (format 0, UTF-8) or bytes (format 1, binary). */
export type ExecuteValue = string | Uint8Array;

/** pg's per-connection record of named statements (pg/lib/connection.js, pinned pg version). */
interface PreparedStatements {
  parsedStatements: Record<string, string | undefined>;
  submittedNamedStatements: Record<string, string | undefined>;
}

/**
 * Runs the named statement `name` (parsed from `text` on a connection's first use) with
 * `values`; resolves with the row count of its CommandComplete (`INSERT 0 1` → 1). Rejects with
 * pg's error: a `pg.DatabaseError` from the server, or a plain `Error` when the connection failed,
 * the read timeout fired, or the answer was not the one of a statement without rows.
 */
export function executeNamed(
  client: pg.ClientBase,
  name: string,
  text: string,
  values: readonly ExecuteValue[],
): Promise<number> {
  return new Promise((resolve, reject) => {
    client.query(
      new NamedExecute(name, text, values, false, (err, count) =>
        err === undefined ? resolve(count) : reject(err),
      ),
    );
  });
}

/** A row's columns as text (`null` for SQL NULL): results are requested in text format. */
export type TextRow = readonly (string | null)[];

/**
 * Runs the named statement `name` that returns at most one row (the truncate), as
 * `executeNamed` does; resolves with that row's columns as text, or `undefined` for no row.
 * Rejects as `executeNamed` does, and on more than one row or a command tag other than
 * `SELECT n`.
 */
export function executeNamedRow(
  client: pg.ClientBase,
  name: string,
  text: string,
  values: readonly ExecuteValue[],
): Promise<TextRow | undefined> {
  return new Promise((resolve, reject) => {
    const q = new NamedExecute(name, text, values, true, (err) =>
      err === undefined ? resolve(q.row) : reject(err),
    );
    client.query(q);
  });
}

class NamedExecute implements pg.Submittable {
  // pg reads `name` (ParseComplete and error bookkeeping) and `text`; it wraps `callback`
  // with its read timeout.
  readonly name: string;
  readonly text: string;
  callback: (err: Error | undefined, count: number) => void;
  /** The row of a statement run with `rows` (`executeNamedRow`). */
  row: TextRow | undefined;
  readonly #values: readonly ExecuteValue[];
  readonly #rows: boolean;
  #count = -1;
  #unexpected: string | undefined;

  constructor(
    name: string,
    text: string,
    values: readonly ExecuteValue[],
    rows: boolean,
    callback: (err: Error | undefined, count: number) => void,
  ) {
    this.name = name;
    this.text = text;
    this.#values = values;
    this.#rows = rows;
    this.callback = callback;
  }

  submit(connection: pg.Connection): Error | null {
    const stream = connection.stream;
    if (!stream.writable) return new Error('the Postgres connection is not writable');
    const prepared = connection as unknown as PreparedStatements;
    const parse =
      prepared.parsedStatements[this.name] === undefined &&
      prepared.submittedNamedStatements[this.name] === undefined;
    if (parse) prepared.submittedNamedStatements[this.name] = this.text;
    stream.write(encodeExecute(this.name, parse ? this.text : undefined, this.#values));
    return null;
  }

  handleCommandComplete(msg: { text: string }): void {
    const m = (this.#rows ? /^SELECT (\d+)$/ : /^INSERT \d+ (\d+)$/).exec(msg.text);
    if (m === null) this.#unexpected = `command tag ${JSON.stringify(msg.text)}`;
    else this.#count = Number(m[1]);
  }

  handleReadyForQuery(): void {
    if (this.#unexpected !== undefined) {
      this.callback(new Error(`unexpected answer to ${this.name}: ${this.#unexpected}`), -1);
    } else if (this.#count < 0) {
      this.callback(new Error(`unexpected answer to ${this.name}: no CommandComplete`), -1);
    } else this.callback(undefined, this.#count);
  }

  handleError(err: Error): void {
    this.callback(err, -1);
  }

  // No Describe is sent, so no RowDescription comes; a statement without rows gets no DataRow,
  // one with `rows` at most one. Otherwise the call fails (and the connection, its error
  // having no SQLSTATE, is dropped).
  handleRowDescription(): void {
    this.#unexpected = 'RowDescription';
  }
  handleDataRow(msg?: { fields: TextRow }): void {
    if (!this.#rows) this.#unexpected = 'DataRow';
    else if (this.row !== undefined) this.#unexpected = 'more than one DataRow';
    else if (msg === undefined) this.#unexpected = 'DataRow without fields';
    else this.row = msg.fields;
  }
  handleEmptyQuery(): void {
    this.#unexpected = 'EmptyQueryResponse';
  }
  handlePortalSuspended(): void {
    this.#unexpected = 'PortalSuspended';
  }
  handleCopyInResponse(): void {
    this.#unexpected = 'CopyInResponse';
  }
  handleCopyData(): void {
    this.#unexpected = 'CopyData';
  }
}

/**
 * [Parse (if `parseText`)] + Bind (unnamed portal, text parameters in format 0, bytes in
 * format 1, results in text) + Execute (all rows) + Sync, as one buffer: the bytes pg's
 * serializer writes for the same messages (its tests check that).
 */
export function encodeExecute(
  name: string,
  parseText: string | undefined,
  values: readonly ExecuteValue[],
): Buffer {
  const nameBytes = Buffer.byteLength(name);
  const parseSize =
    parseText === undefined ? 0 : 1 + 4 + nameBytes + 1 + Buffer.byteLength(parseText) + 1 + 2;
  // Bind: portal '' (1), name + NUL, format count + codes, value count + (length + bytes) each,
  // one result format (text), as pg's serializer writes it.
  let bindBody = 1 + nameBytes + 1 + 2 + 2 * values.length + 2 + 4;
  for (const v of values) bindBody += 4 + (typeof v === 'string' ? Buffer.byteLength(v) : v.length);
  const buf = Buffer.allocUnsafe(parseSize + 1 + 4 + bindBody + EXECUTE_SYNC.length);
  let o = 0;
  if (parseText !== undefined) {
    buf[o++] = 0x50; // 'P'
    o = buf.writeInt32BE(parseSize - 1, o);
    o += buf.write(name, o, 'utf8');
    buf[o++] = 0;
    o += buf.write(parseText, o, 'utf8');
    buf[o++] = 0;
    o = buf.writeInt16BE(0, o); // no parameter types: the statement casts its own
  }
  buf[o++] = 0x42; // 'B'
  o = buf.writeInt32BE(4 + bindBody, o);
  buf[o++] = 0; // unnamed portal
  o += buf.write(name, o, 'utf8');
  buf[o++] = 0;
  o = buf.writeInt16BE(values.length, o);
  for (const v of values) o = buf.writeInt16BE(typeof v === 'string' ? 0 : 1, o);
  o = buf.writeInt16BE(values.length, o);
  for (const v of values) {
    if (typeof v === 'string') {
      const n = buf.write(v, o + 4, 'utf8');
      o = buf.writeInt32BE(n, o) + n;
    } else {
      o = buf.writeInt32BE(v.length, o);
      buf.set(v, o);
      o += v.length;
    }
  }
  o = buf.writeInt16BE(1, o);
  o = buf.writeInt16BE(0, o); // result columns in text (there are none)
  EXECUTE_SYNC.copy(buf, o);
  return buf;
}

/** Execute (unnamed portal, no row limit) + Sync. */
const EXECUTE_SYNC = Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0x53, 0, 0, 0, 4]);
