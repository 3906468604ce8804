import { describe, expect, it } from 'vitest';
import { createBearerAuth, UNSCOPED } from './bearer-auth.js';
import { BrokerError } from './errors.js';
import { compileTokenGrants } from './token-scopes.js';

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
});
