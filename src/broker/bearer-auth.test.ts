import { describe, expect, it } from 'vitest';
import { createBearerAuth } from './bearer-auth.js';

describe('createBearerAuth', () => {
  it('lets everything through without a token', () => {
    expect(createBearerAuth(undefined)({})).toBe(true);
  });

  it('accepts exactly the configured token', () => {
    const ok = createBearerAuth('s3cret');
    expect(ok({ authorization: 'Bearer s3cret' })).toBe(true);
    expect(ok({ authorization: 'Bearer  s3cret ' })).toBe(true);
    expect(ok({ authorization: 'Bearer s3cre' })).toBe(false);
    expect(ok({ authorization: 'Bearer s3cretX' })).toBe(false);
    expect(ok({ authorization: 'Basic s3cret' })).toBe(false);
    expect(ok({})).toBe(false);
  });
});
