import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createMemoryConsensus } from '../consensus/index.js';
import { createShardStateCache } from './cache.js';
import { createFakeClock } from './fake-clock.js';
import type { PersistState } from './persist-model.js';
import type { PublishEvent } from './types.js';

const SHARD = 's00000000-0000-0000-0000-000000000001';

const addBatch =
  (id: string) =>
  (s: PersistState): PersistState => ({
    ...s,
    upper: [BigInt(s.batches.size + 1)],
    batches: new Map(s.batches).set(id, {
      lower: s.upper,
      upper: [BigInt(s.batches.size + 1)],
      since: [0n],
      partKeys: [`part-${id}`],
      len: 1n,
    }),
  });

describe('shard-state cache', () => {
  it('shares one state between handles and applies a writer commit to all of them', async () => {
    const consensus = createMemoryConsensus();
    const published: PublishEvent[] = [];
    const subs: string[] = [];
    const cache = createShardStateCache({
      consensus,
      clock: createFakeClock(),
      hooks: {
        publish: (e) => published.push(e),
        onSubscribe: (id) => subs.push(`+${id}`),
        onUnsubscribe: (id) => subs.push(`-${id}`),
      },
    });
    const a = await cache.open<PersistState>(SHARD);
    const b = await cache.open<PersistState>(SHARD);
    expect(a.seqno).toBe(0n);
    const r = await a.update(addBatch('b1'));
    expect(r.outcome).toBe('committed');
    expect(r.seqno).toBe(1n);
    expect(b.seqno).toBe(1n);
    expect(b.state).toBe(a.state);
    expect(b.state.batches.has('b1')).toBe(true);
    expect(published).toHaveLength(1);
    expect(published[0]?.seqno).toBe(1n);
    const head = await consensus.head(SHARD);
    expect(head?.seqno).toBe(1n);
    a.close();
    expect(subs).toEqual([`+${SHARD}`]);
    b.close();
    expect(subs).toEqual([`+${SHARD}`, `-${SHARD}`]);
    expect(cache.openShards()).toEqual([]);
  });

  it('applies a diff pushed from another cache, and counts a duplicate as stale', async () => {
    const consensus = createMemoryConsensus();
    const registry = new Registry();
    const pushes: PublishEvent[] = [];
    const writer = createShardStateCache({ consensus, hooks: { publish: (e) => pushes.push(e) } });
    const reader = createShardStateCache({ consensus, registry });
    const w = await writer.open<PersistState>(SHARD);
    const r = await reader.open<PersistState>(SHARD);
    await w.update(addBatch('x'));
    const p = pushes[0]!;
    expect(reader.receiveDiff(SHARD, p.seqno, p.diff)).toBe('applied');
    expect(reader.receiveDiff(SHARD, p.seqno, p.diff)).toBe('stale');
    expect(r.seqno).toBe(1n);
    expect(persistEq(r.state, w.state)).toBe(true);
    const text = await registry.metrics();
    expect(text).toMatch(/persist_pubsub_state_diff_applied_total\{shard="[^"]+"\} 1/);
    expect(text).toMatch(/persist_pubsub_state_diff_stale_total\{shard="[^"]+"\} 1/);
  });
});

import { persistStateModel } from './persist-model.js';

const persistEq = (a: PersistState, b: PersistState) => persistStateModel.equals(a, b);
