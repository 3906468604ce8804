import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SUBJECT_PREFIX,
  parseSubjectPrefix,
  shardIdOfSubject,
  shardSubject,
} from './nats-subject.js';

describe('NATS subject scheme', () => {
  it('maps a real shard id to one base64url token under the prefix', () => {
    const id = 's00000000-0000-0000-0000-000000000000';
    const subject = shardSubject(DEFAULT_SUBJECT_PREFIX, id);
    expect(subject).toBe(`persist-pubsub.v1.shard.${Buffer.from(id).toString('base64url')}`);
    expect(subject.split('.')).toHaveLength(4);
    expect(shardIdOfSubject(DEFAULT_SUBJECT_PREFIX, subject)).toBe(id);
  });

  it('is a valid single token and reversible for any string, including . * > and spaces', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 300, unit: 'grapheme' }), (id) => {
        const subject = shardSubject('p.q', id);
        const token = subject.slice('p.q.'.length);
        expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(shardIdOfSubject('p.q', subject)).toBe(id);
      }),
    );
    for (const id of ['a.b', 'a b', '*', '>', 'x.>', 'é✓']) {
      expect(shardSubject('p', id)).toMatch(/^p\.[A-Za-z0-9_-]+$/);
    }
  });

  it('rejects subjects that are not ours or not canonical', () => {
    expect(shardIdOfSubject('p', 'q.YQ')).toBeUndefined();
    expect(shardIdOfSubject('p', 'p.')).toBeUndefined();
    expect(shardIdOfSubject('p', 'p.YQ.x')).toBeUndefined();
    // 'YR' decodes to 'a' too but is not the canonical encoding of it.
    expect(shardIdOfSubject('p', 'p.YR')).toBeUndefined();
    expect(shardIdOfSubject('p', 'p.YQ')).toBe('a');
  });

  it('validates prefixes: a literal subject, never a throw', () => {
    expect(parseSubjectPrefix('a.b-c_d')).toEqual({ ok: true, prefix: 'a.b-c_d' });
    for (const bad of ['', 'a..b', 'a.*', 'a.>', 'a b', '.a', 'a.', 'é', 3]) {
      expect(parseSubjectPrefix(bad)).toMatchObject({ ok: false });
    }
  });
});
