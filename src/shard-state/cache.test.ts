import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createMemoryConsensus } from '../consensus/index.js';
import { countListeners } from '../util/abort-listeners.test-support.js';
import { createFakeClock } from '../util/index.js';
import { createShardStateCache } from './cache.js';
import { type PersistState, persistStateModel } from './persist-model.js';
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

  it('refuses a bad shard id before Consensus; shows the pubsub status on every handle', async () => {
    const consensus = createMemoryConsensus();
    const cache = createShardStateCache({ consensus });
    await expect(cache.open('orders 2024')).rejects.toMatchObject({
      code: 'invalid_shard_id',
      reason: 'shard_id_charset',
    });
    expect((await consensus.listKeys()).keys).toEqual([]);
    const a = await cache.open<PersistState>(SHARD);
    const b = await cache.open<PersistState>(SHARD);
    expect(a.pubsubStatus).toEqual({ state: 'ok' });
    const error = new Error('refused by the broker');
    cache.setPubSubStatus(SHARD, { state: 'refused', reason: 'invalid_shard_id', error });
    expect(b.pubsubStatus).toEqual({ state: 'refused', reason: 'invalid_shard_id', error });
    a.close();
    b.close();
    // Reopened: a new subscription, a fresh status.
    const c = await cache.open<PersistState>(SHARD);
    expect(c.pubsubStatus).toEqual({ state: 'ok' });
    c.close();
  });

  it('logs refused diffs through the injected pino logger', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
    const cache = createShardStateCache({ consensus: createMemoryConsensus(), logger });
    const h = await cache.open<PersistState>(SHARD);
    expect(cache.receiveDiff(SHARD, 5n, new Uint8Array([9, 9, 9]))).toBe('refetch');
    await cache.fetchNow(SHARD, 'gap_notice');
    const refused = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'refusing a pushed diff');
    expect(refused).toMatchObject({ level: 40, component: 'shard-state', shardId: SHARD });
    expect(refused.diff).toEqual({ seqno: '5' });
    const ac = new AbortController();
    ac.abort();
    await expect(cache.fetchNow(SHARD, 'reconnect', { signal: ac.signal })).rejects.toMatchObject({
      code: 'aborted',
    });
    h.close();
  });
});

const persistEq = (a: PersistState, b: PersistState) => persistStateModel.equals(a, b);

describe('waiting on a shared signal', () => {
  it('one signal shared by 300 listen loops adds one abort listener, not 300', async () => {
    const consensus = createMemoryConsensus();
    const cache = createShardStateCache({ consensus, clock: createFakeClock() });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const ac = new AbortController();
      const listeners = countListeners(ac.signal);
      const ids = Array.from({ length: 300 }, (_, i) => `s${String(i).padStart(4, '0')}`);
      const handles = await Promise.all(ids.map((id) => cache.open<PersistState>(id)));
      const seen = handles.map(() => [] as bigint[]);
      const loops = handles.map(async (h, i) => {
        for await (const v of h.listen({ signal: ac.signal })) seen[i]?.push(v.seqno);
      });
      await new Promise((r) => setImmediate(r));
      // One shard moves on through a pushed diff: its loop sees it and waits again.
      const id = ids[7] as string;
      const published: Uint8Array[] = [];
      const pushing = createShardStateCache({
        consensus,
        hooks: { publish: (e) => published.push(e.diff) },
      });
      const p = await pushing.open<PersistState>(id);
      await p.update(addBatch('x'));
      expect(cache.receiveDiff(id, 1n, published[0] as Uint8Array)).toBe('applied');
      await new Promise((r) => setImmediate(r));
      expect(seen[7]).toEqual([0n, 1n]);
      expect(listeners()).toBe(1);
      ac.abort();
      const results = await Promise.allSettled(loops);
      expect(results.every((r) => r.status === 'rejected')).toBe(true);
      expect(results[0]).toMatchObject({ reason: { code: 'aborted' } });
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((x) => x.name === 'MaxListenersExceededWarning')).toEqual([]);
      p.close();
      pushing.close();
    } finally {
      process.off('warning', onWarning);
      cache.close();
    }
  });
});
