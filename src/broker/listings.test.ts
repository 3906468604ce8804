import { describe, expect, it } from 'vitest';
import { BrokerError } from './errors.js';
import { setupFanout } from './fanout.test-support.js';
import { createListings } from './listings.js';

describe('listings', () => {
  it('pages shards in key order with subscriber counts and the last seqno', () => {
    const { core, conn, push } = setupFanout();
    const a = conn();
    const b = conn();
    for (const s of ['s3', 's1', 's2']) core.subscribe(a.c, s);
    core.subscribe(b.c, 's2');
    push(b.c, 's1', 7n);
    const l = createListings(core);
    const p1 = l.listShards({ pageSize: 2 });
    expect(p1.items).toEqual([
      { shardId: 's1', subscribers: 1, lastSeqno: '7' },
      { shardId: 's2', subscribers: 2, lastSeqno: undefined },
    ]);
    const p2 = l.listShards({ pageSize: 2, pageToken: p1.nextPageToken });
    expect(p2.items.map((i) => i.shardId)).toEqual(['s3']);
    expect(p2.nextPageToken).toBeUndefined();
  });

  it('pages connections in the order they opened', () => {
    const { core, conn } = setupFanout();
    const conns = [conn(), conn(), conn()];
    core.subscribe(conns[1]!.c, 'x');
    const l = createListings(core);
    const p1 = l.listConnections({ pageSize: 2 });
    expect(p1.items.map((i) => [i.connId, i.subscriptions])).toEqual([
      ['c1', 0],
      ['c2', 1],
    ]);
    const p2 = l.listConnections({ pageToken: p1.nextPageToken });
    expect(p2.items.map((i) => i.connId)).toEqual(['c3']);
    expect(p2.nextPageToken).toBeUndefined();
  });

  it('refuses a bad page size or a forged token with invalid_argument', () => {
    const l = createListings(setupFanout().core);
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return err instanceof BrokerError ? err.code : 'other';
      }
      return 'none';
    };
    expect(code(() => l.listShards({ pageSize: 0 }))).toBe('invalid_argument');
    expect(code(() => l.listShards({ pageToken: 'Yzox' }))).toBe('invalid_argument');
    expect(
      code(() => l.listConnections({ pageToken: Buffer.from('c:x').toString('base64url') })),
    ).toBe('invalid_argument');
  });
});
