import { describe, expect, it } from 'vitest';
import { encodePush } from '../protocol/index.js';
import { decodeInbound } from './inbound.js';

describe('decodeInbound', () => {
  const push = (id: string) => encodePush(id, 3n, Uint8Array.of(7), undefined, undefined, false);

  it('takes a push whose shard id passes the rule, however long, every time', () => {
    for (const id of ['s1', `s${'y'.repeat(200)}`]) {
      for (let round = 0; round < 2; round++) {
        expect(decodeInbound(push(id))).toMatchObject({ kind: 'diff', shardId: id, seqno: 3n });
      }
    }
  });

  it('refuses a push whose shard id breaks the rule, also once its id is cached', () => {
    for (const id of ['s 1', 'sé', `s${'z'.repeat(300)}`]) {
      for (let round = 0; round < 2; round++) {
        expect(decodeInbound(push(id))).toMatchObject({ kind: 'unknown' });
      }
    }
  });
});
