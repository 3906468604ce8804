import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BrokerError } from './errors.js';
import { compileShardPatterns, MAX_SHARD_PATTERN_CHARS } from './shard-patterns.js';

const id = 's3f0c1e7a-2b4d-4c6e-8f10-123456789abc';

describe('compileShardPatterns', () => {
  it('an exact id matches itself only', () => {
    const p = compileShardPatterns([id], 'publish');
    expect(p.matches(id)).toBe(true);
    expect(p.matches(`${id}x`)).toBe(false);
    expect(p.matches(id.slice(0, -1))).toBe(false);
  });

  it('a trailing * matches by prefix; * alone matches everything', () => {
    const p = compileShardPatterns(['tenant-a/*', 's3f*'], 'subscribe');
    expect(p.matches('tenant-a/orders')).toBe(true);
    expect(p.matches('tenant-a/')).toBe(true);
    expect(p.matches('tenant-b/orders')).toBe(false);
    expect(p.matches(id)).toBe(true);
    expect(p.matches('s3e')).toBe(false);
    expect(compileShardPatterns(['*'], 'x').matches('anything!')).toBe(true);
  });

  it('an empty list allows nothing', () => {
    expect(compileShardPatterns([], 'publish').matches(id)).toBe(false);
  });

  it('keeps the patterns as written', () => {
    expect(compileShardPatterns(['b*', 'a', 'b1*'], 'x').source).toEqual(['b*', 'a', 'b1*']);
  });

  it.each([
    [[''], 'tokens[0].publish[0] must be a non-empty string'],
    [[7], 'tokens[0].publish[0] must be a non-empty string'],
    [['ok', 'a*b'], 'tokens[0].publish[1] "a*b": only a trailing * is a wildcard'],
    [['**'], 'only a trailing * is a wildcard'],
    [['has space'], 'outside printable ASCII'],
    [['é'], 'outside printable ASCII'],
    [['x'.repeat(MAX_SHARD_PATTERN_CHARS + 1)], 'is longer than'],
  ])('refuses %j with an error naming the pattern', (patterns, message) => {
    let err: unknown;
    try {
      compileShardPatterns(patterns, 'tokens[0].publish');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('invalid_argument');
    expect((err as BrokerError).message).toContain(message);
  });

  it('refuses a list that is not an array', () => {
    expect(() => compileShardPatterns('s*', 'tokens[1].subscribe')).toThrow(
      'tokens[1].subscribe must be an array',
    );
  });

  it('matches exactly what the definition says (property)', () => {
    const charArb = fc.constantFrom('a', 'b', 's', '-', '/', '0');
    const strArb = fc.string({ unit: charArb, maxLength: 6 });
    const patternArb = fc.oneof(
      strArb.filter((s) => s.length > 0),
      strArb.map((s) => `${s}*`),
    );
    fc.assert(
      fc.property(fc.array(patternArb, { maxLength: 5 }), strArb, (patterns, shard) => {
        const expected = patterns.some((p) =>
          p.endsWith('*') ? shard.startsWith(p.slice(0, -1)) : shard === p,
        );
        expect(compileShardPatterns(patterns, 'p').matches(shard)).toBe(expected);
      }),
    );
  });
});
