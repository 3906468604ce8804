import type pg from 'pg';
import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import { encodeExecute, executeNamed, executeNamedRow } from './postgres-execute.js';

/** What pg itself writes for a named statement: [Parse] Bind Execute Sync (no Describe). */
function pgBytes(name: string, text: string | undefined, values: (string | Buffer)[]): Buffer {
  return Buffer.concat([
    ...(text === undefined ? [] : [serialize.parse({ name, text })]),
    serialize.bind({ statement: name, values }),
    serialize.execute(),
    serialize.sync(),
  ]);
}

describe('encodeExecute', () => {
  const data = new Uint8Array(600).map((_, i) => i % 251);

  it("writes pg's own bytes for Bind + Execute + Sync, text and binary parameters", () => {
    const values = ['s00000000-1111-2222-3333-444444444444', '9223372036854775807', data, '41'];
    expect(encodeExecute('cas_expected', undefined, values)).toEqual(
      pgBytes('cas_expected', undefined, [values[0], values[1], Buffer.from(data), values[3]] as (
        | string
        | Buffer
      )[]),
    );
  });

  it('prefixes the Parse on first use, the SQL in UTF-8', () => {
    const text = 'INSERT INTO "t" (shard, data) VALUES ($1::text, $2::bytea) -- é';
    expect(encodeExecute('cas_first', text, ['ключ', new Uint8Array(0)])).toEqual(
      pgBytes('cas_first', text, ['ключ', Buffer.alloc(0)]),
    );
  });

  it('encodes a key of multi-byte characters by its byte length', () => {
    const key = '€'.repeat(100);
    const buf = encodeExecute('s', undefined, [key]);
    expect(buf).toEqual(pgBytes('s', undefined, [key]));
    expect(buf.includes(Buffer.from(key, 'utf8'))).toBe(true);
  });
});

/** A pg client stand-in: `query` submits at once on a connection that records its writes. */
function fakeClient(parsed: Record<string, string> = {}) {
  const writes: Buffer[] = [];
  const connection = {
    stream: { writable: true, write: (b: Buffer) => writes.push(b) },
    parsedStatements: parsed,
    submittedNamedStatements: {} as Record<string, string>,
  };
  let active: ActiveQuery | undefined;
  const client = {
    query(q: ActiveQuery) {
      active = q;
      const err = q.submit(connection);
      if (err !== null) queueMicrotask(() => q.handleError(err));
    },
  };
  return {
    client: client as unknown as pg.ClientBase,
    connection,
    writes,
    answer: (msgs: ((q: ActiveQuery) => void)[]) => {
      for (const m of msgs) m(active as ActiveQuery);
    },
  };
}

interface ActiveQuery {
  submit(c: unknown): Error | null;
  handleCommandComplete(msg: { text: string }): void;
  handleReadyForQuery(): void;
  handleError(err: Error): void;
  handleDataRow(msg?: { fields: (string | null)[] }): void;
}

const complete = (text: string) => (q: ActiveQuery) => q.handleCommandComplete({ text });
const ready = (q: ActiveQuery) => q.handleReadyForQuery();
const dataRow = (fields: (string | null)[]) => (q: ActiveQuery) => q.handleDataRow({ fields });

describe('executeNamed', () => {
  it('sends the Parse only on a connection that has not parsed the statement', async () => {
    const fresh = fakeClient();
    const first = executeNamed(fresh.client, 'cas', 'SELECT 1', ['k']);
    fresh.answer([complete('INSERT 0 1'), ready]);
    expect(await first).toBe(1);
    expect(fresh.writes).toEqual([encodeExecute('cas', 'SELECT 1', ['k'])]);
    expect(fresh.connection.submittedNamedStatements).toEqual({ cas: 'SELECT 1' });

    const warm = fakeClient({ cas: 'SELECT 1' });
    const again = executeNamed(warm.client, 'cas', 'SELECT 1', ['k']);
    warm.answer([complete('INSERT 0 0'), ready]);
    expect(await again).toBe(0);
    expect(warm.writes).toEqual([encodeExecute('cas', undefined, ['k'])]);
  });

  it("rejects with pg's error, and on an answer that is not a row-less statement's", async () => {
    const f = fakeClient();
    const failed = executeNamed(f.client, 'cas', 'SELECT 1', []);
    const err = new Error('duplicate key');
    f.answer([(q) => q.handleError(err)]);
    await expect(failed).rejects.toBe(err);

    const rows = fakeClient();
    const withRows = executeNamed(rows.client, 'cas', 'SELECT 1', []);
    rows.answer([(q) => q.handleDataRow(), complete('INSERT 0 1'), ready]);
    await expect(withRows).rejects.toThrow(/unexpected answer to cas: DataRow/);

    const tag = fakeClient();
    const badTag = executeNamed(tag.client, 'cas', 'SELECT 1', []);
    tag.answer([complete('SELECT 1'), ready]);
    await expect(badTag).rejects.toThrow(/command tag "SELECT 1"/);

    const none = fakeClient();
    const noComplete = executeNamed(none.client, 'cas', 'SELECT 1', []);
    none.answer([ready]);
    await expect(noComplete).rejects.toThrow(/no CommandComplete/);
  });

  it('fails without writing on a connection that is not writable', async () => {
    const f = fakeClient();
    f.connection.stream.writable = false;
    await expect(executeNamed(f.client, 'cas', 'SELECT 1', [])).rejects.toThrow(/not writable/);
    expect(f.writes).toEqual([]);
  });
});

describe('executeNamedRow', () => {
  it("resolves with the row's text columns, or undefined for none; writes what executeNamed writes", async () => {
    const f = fakeClient();
    const one = executeNamedRow(f.client, 'truncate', 'SELECT 1', ['k', '3']);
    f.answer([dataRow(['7', null]), complete('SELECT 1'), ready]);
    expect(await one).toEqual(['7', null]);
    expect(f.writes).toEqual([encodeExecute('truncate', 'SELECT 1', ['k', '3'])]);

    const empty = fakeClient({ truncate: 'SELECT 1' });
    const none = executeNamedRow(empty.client, 'truncate', 'SELECT 1', []);
    empty.answer([complete('SELECT 0'), ready]);
    expect(await none).toBeUndefined();
  });

  it('rejects on a second row, an INSERT tag or no CommandComplete', async () => {
    const two = fakeClient();
    const twoRows = executeNamedRow(two.client, 'truncate', 'SELECT 1', []);
    two.answer([dataRow(['1']), dataRow(['2']), complete('SELECT 2'), ready]);
    await expect(twoRows).rejects.toThrow(/unexpected answer to truncate: more than one DataRow/);

    const tag = fakeClient();
    const insert = executeNamedRow(tag.client, 'truncate', 'SELECT 1', []);
    tag.answer([complete('INSERT 0 1'), ready]);
    await expect(insert).rejects.toThrow(/command tag "INSERT 0 1"/);

    const none = fakeClient();
    const noComplete = executeNamedRow(none.client, 'truncate', 'SELECT 1', []);
    none.answer([dataRow(['1']), ready]);
    await expect(noComplete).rejects.toThrow(/no CommandComplete/);
  });
});
