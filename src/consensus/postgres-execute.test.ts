import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import { encodeExecute } from './postgres-execute.js';

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
