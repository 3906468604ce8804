import { describe, expect, it } from 'vitest';
import { BrokerError } from './errors.js';
import { compileTokenGrants } from './token-scopes.js';

function errorOf(f: () => unknown): BrokerError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('invalid_argument');
    return err as BrokerError;
  }
  throw new Error('expected a BrokerError');
}

describe('compileTokenGrants', () => {
  it('looks a presented token up to its scope; any other string to nothing', () => {
    const t = compileTokenGrants([
      { name: 'writer', token: 'tok-w', publish: ['s*'], subscribe: ['*'] },
      { name: 'reader', token: 'tok-r', subscribe: ['s1'] },
    ]);
    expect(t.size).toBe(2);
    const w = t.lookup('tok-w')!;
    expect(w.name).toBe('writer');
    expect(w.publish.matches('s9')).toBe(true);
    const r = t.lookup('tok-r')!;
    expect(r.publish.matches('s1')).toBe(false);
    expect(r.subscribe.matches('s1')).toBe(true);
    expect(r.subscribe.matches('s2')).toBe(false);
    for (const wrong of ['tok-', 'tok-ww', 'TOK-W', '', 'writer']) {
      expect(t.lookup(wrong)).toBeUndefined();
    }
  });

  it('missing lists allow nothing', () => {
    const s = compileTokenGrants([{ name: 'n', token: 't' }]).lookup('t')!;
    expect(s.publish.matches('s1') || s.subscribe.matches('s1')).toBe(false);
  });

  it("a token's successor in a reloaded table is found by the token, whatever its name", () => {
    const a = compileTokenGrants([
      { name: 'x', token: 'keep' },
      { name: 'y', token: 'drop' },
    ]);
    const b = compileTokenGrants([{ name: 'x2', token: 'keep', subscribe: ['*'] }]);
    expect(b.successor(a.lookup('keep')!)?.name).toBe('x2');
    expect(b.successor(a.lookup('drop')!)).toBeUndefined();
  });

  it('several tokens may share a name (a rotation)', () => {
    const t = compileTokenGrants([
      { name: 'svc', token: 'old' },
      { name: 'svc', token: 'new' },
    ]);
    expect(t.lookup('old')?.name).toBe('svc');
    expect(t.lookup('new')?.name).toBe('svc');
  });

  it.each([
    [{}, 'tokens must be an array'],
    [[null], 'tokens[0] must be an object'],
    [[{ name: 'a', token: 't', publsh: [] }], 'tokens[0] has an unknown field "publsh"'],
    [[{ token: 't' }], 'tokens[0].name must be 1 to 128 characters'],
    [[{ name: 'has space', token: 't' }], 'tokens[0].name must be'],
    [[{ name: 'x'.repeat(129), token: 't' }], 'tokens[0].name must be'],
    [[{ name: 'a' }], 'tokens[0].token (of a) must be a non-empty string'],
    [[{ name: 'a', token: 'two words' }], 'visible ASCII without spaces'],
    [[{ name: 'a', token: 't', subscribe: ['a*b'] }], 'tokens[0].subscribe[0] "a*b"'],
    [[{ name: 'a', token: 't', publish: 's*' }], 'tokens[0].publish must be an array'],
  ])('refuses %j with an error naming the entry', (grants, message) => {
    expect(errorOf(() => compileTokenGrants(grants)).message).toContain(message);
  });

  it('refuses a duplicate token, naming both entries and never the token', () => {
    const err = errorOf(() =>
      compileTokenGrants([
        { name: 'a', token: 'SeCrEt-1' },
        { name: 'b', token: 'SeCrEt-1' },
      ]),
    );
    expect(err.message).toBe('tokens[1].token (of b) is also the token of tokens[0] (a)');
    expect(err.message).not.toContain('SeCrEt');
  });
});
