import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_SHARD_ID_BYTES, parseShardId, ShardIdError, toShardId } from './shard-id.js';

describe('parseShardId', () => {
  it('accepts reference shard ids and any printable ASCII without spaces', () => {
    const id = 's00000000-0000-0000-0000-000000000000';
    expect(parseShardId(id)).toEqual({ ok: true, shardId: id });
    expect(parseShardId('!~')).toMatchObject({ ok: true });
    expect(parseShardId('x'.repeat(DEFAULT_MAX_SHARD_ID_BYTES))).toMatchObject({ ok: true });
  });

  it('refuses the ids one layer used to accept and another refused, with a stable reason', () => {
    const cases: [unknown, string][] = [
      ['', 'shard_id_length'],
      ['orders 2024', 'shard_id_charset'],
      ['sé', 'shard_id_charset'],
      ['s\u0000', 'shard_id_charset'],
      ['s\u0007x', 'shard_id_charset'],
      ['s\u007f', 'shard_id_charset'],
      ['x'.repeat(257), 'shard_id_length'],
      ['x'.repeat(513), 'shard_id_length'],
      [42, 'shard_id_charset'],
      [undefined, 'shard_id_charset'],
    ];
    for (const [id, reason] of cases) expect(parseShardId(id)).toMatchObject({ ok: false, reason });
  });

  it('takes the limit as a parameter (the broker’s --max-shard-id-bytes)', () => {
    expect(parseShardId('abcd', 3)).toMatchObject({ ok: false, reason: 'shard_id_length' });
    expect(parseShardId('abc', 3)).toMatchObject({ ok: true });
  });

  it('toShardId throws a ShardIdError with a stable code', () => {
    expect(toShardId('s1')).toBe('s1');
    try {
      toShardId('a b');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ShardIdError);
      expect(err).toMatchObject({ code: 'invalid_shard_id', reason: 'shard_id_charset' });
    }
  });

  it('property: never throws; accepts exactly 1..max chars of 0x21-0x7E', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        const r = parseShardId(s, 32);
        const expected = s.length >= 1 && s.length <= 32 && /^[\x21-\x7e]+$/.test(s);
        expect(r.ok).toBe(expected);
      }),
    );
  });
});
