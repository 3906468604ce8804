import * as crypto from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { createBearerAuth, UNSCOPED } from './bearer-auth.js';
import { BrokerError } from './errors.js';
import { compileTokenGrants } from './token-scopes.js';

// The real functions, watched: the constant-time paths must stay the ones taken.
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  return {
    ...real,
    timingSafeEqual: vi.fn(real.timingSafeEqual),
    createHmac: vi.fn(real.createHmac),
  };
});

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe('createBearerAuth', () => {
  it('lets everything through without a token', () => {
    expect(createBearerAuth({}).authenticate({})).toBe(UNSCOPED);
  });

  it('accepts exactly the configured token', () => {
    const ok = (h: Record<string, string>) =>
      createBearerAuth({ token: 's3cret' }).authenticate(h) !== undefined;
    expect(ok({ authorization: 'Bearer s3cret' })).toBe(true);
    expect(ok({ authorization: 'Bearer  s3cret ' })).toBe(true);
    expect(ok({ authorization: 'Bearer s3cre' })).toBe(false);
    expect(ok({ authorization: 'Bearer s3cretX' })).toBe(false);
    expect(ok({ authorization: 'Basic s3cret' })).toBe(false);
    expect(ok({})).toBe(false);
  });

  it('a token of the table is scoped and named; the single token stays unscoped', () => {
    const auth = createBearerAuth({
      token: 'plain',
      tokens: compileTokenGrants([{ name: 'reader', token: 'tok-r', subscribe: ['s*'] }]),
    });
    expect(auth.authenticate(bearer('plain'))).toBe(UNSCOPED);
    const p = auth.authenticate(bearer('tok-r'));
    expect(p?.kind === 'scoped' && p.scope.name).toBe('reader');
    expect(auth.authenticate(bearer('tok-x'))).toBeUndefined();
    expect(auth.authenticate({})).toBeUndefined();
  });

  it('an empty table lets nobody in', () => {
    expect(createBearerAuth({ tokens: compileTokenGrants([]) }).authenticate({})).toBeUndefined();
  });

  it('refuses the single token inside the table, at construction and at a reload', () => {
    const table = compileTokenGrants([{ name: 'a', token: 'plain' }]);
    expect(() => createBearerAuth({ token: 'plain', tokens: table })).toThrow(BrokerError);
    const auth = createBearerAuth({ token: 'plain', tokens: compileTokenGrants([]) });
    expect(() => auth.setTable(table)).toThrow('also a token of the scoped tokens');
    expect(auth.table?.size).toBe(0);
  });

  it('a reload needs a broker created with tokens', () => {
    expect(() => createBearerAuth({ token: 't' }).setTable(compileTokenGrants([]))).toThrow(
      'created without tokens',
    );
  });

  it('keeps the comparisons constant-time: fixed-length digests, a keyed hash for the table', () => {
    const equal = vi.mocked(crypto.timingSafeEqual);
    const hmac = vi.mocked(crypto.createHmac);
    const auth = createBearerAuth({
      token: 's3cret',
      tokens: compileTokenGrants([{ name: 'r', token: 'tok-r' }]),
    });
    equal.mockClear();
    hmac.mockClear();
    // Whatever the presented length, the single token is compared as two 32-byte digests.
    for (const given of ['s', 's3cre', 's3cret', 's3cretX'.repeat(40)])
      auth.authenticate(bearer(given));
    expect(equal).toHaveBeenCalledTimes(4);
    for (const [a, b] of equal.mock.calls) {
      expect([(a as Buffer).length, (b as Buffer).length]).toEqual([32, 32]);
    }
    // The table is searched by an HMAC under a random 32-byte key, one per presented token.
    const calls = hmac.mock.calls.length;
    auth.authenticate(bearer('tok-'));
    auth.authenticate(bearer('tok-r'));
    expect(hmac.mock.calls.length - calls).toBe(2);
    const [algorithm, key] = hmac.mock.calls.at(-1)!;
    expect(algorithm).toBe('sha256');
    expect((key as Buffer).length).toBe(32);
  });
});
