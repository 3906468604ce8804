import { describe, expect, it } from 'vitest';
import { bearerAuthorization, bearerToken, frameMessage, sanitizeCallerId } from './grpc.js';

describe('caller id', () => {
  it('defaults to unknown and sanitises', () => {
    expect(sanitizeCallerId(undefined)).toBe('unknown');
    expect(sanitizeCallerId('')).toBe('unknown');
    expect(sanitizeCallerId('env-1/compute 2\n')).toBe('env-1/compute_2_');
    expect(sanitizeCallerId('x'.repeat(500))).toHaveLength(128);
    expect(sanitizeCallerId(['a', 'b'])).toBe('a');
  });
});

describe('bearer token', () => {
  it('round-trips and refuses other schemes', () => {
    expect(bearerToken(bearerAuthorization('sekret'))).toBe('sekret');
    expect(bearerToken('Basic abc')).toBe(undefined);
    expect(bearerToken(undefined)).toBe(undefined);
  });
});

describe('frameMessage', () => {
  it('prefixes flag 0 and the big-endian length', () => {
    expect([...frameMessage(Uint8Array.of(7, 8))]).toEqual([0, 0, 0, 0, 2, 7, 8]);
  });
});
