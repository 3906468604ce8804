import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkShardIdBytes, checkShardIdString, sanitizeCallerId } from './shard-id.js';

describe('shard id check', () => {
  it('accepts reference shard ids', () => {
    expect(checkShardIdString('s00000000-0000-0000-0000-000000000000', 256)).toEqual({
      ok: true,
      shardId: 's00000000-0000-0000-0000-000000000000',
    });
  });
  it('refuses empty, too long, spaces, control bytes and invalid UTF-8', () => {
    expect(checkShardIdString('', 10)).toMatchObject({ ok: false, reason: 'shard_id_length' });
    expect(checkShardIdString('x'.repeat(11), 10)).toMatchObject({
      ok: false,
      reason: 'shard_id_length',
    });
    expect(checkShardIdString('a b', 10)).toMatchObject({ ok: false, reason: 'shard_id_charset' });
    expect(checkShardIdString('a\u0000', 10)).toMatchObject({
      ok: false,
      reason: 'shard_id_charset',
    });
    expect(checkShardIdString('é', 10)).toMatchObject({ ok: false, reason: 'shard_id_charset' });
    expect(checkShardIdBytes(Uint8Array.of(0x73, 0xff, 0xfe), 10)).toMatchObject({
      ok: false,
      reason: 'shard_id_charset',
    });
  });
  it('fuzz: never throws', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
        const r = checkShardIdBytes(b, 32);
        if (r.ok) expect(Buffer.from(r.shardId, 'latin1').equals(Buffer.from(b))).toBe(true);
      }),
    );
  });
});

describe('caller id', () => {
  it('defaults to unknown and sanitises', () => {
    expect(sanitizeCallerId(undefined)).toBe('unknown');
    expect(sanitizeCallerId('')).toBe('unknown');
    expect(sanitizeCallerId('env-1/compute 2\n')).toBe('env-1/compute_2_');
    expect(sanitizeCallerId('x'.repeat(500))).toHaveLength(128);
    expect(sanitizeCallerId(['a', 'b'])).toBe('a');
  });
});
