import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createMemoryConsensus } from '../consensus/index.js';
import { countListeners } from '../util/abort-listeners.test-support.js';
import { createFakeClock } from '../util/index.js';
import { createShardStateCache } from './cache.js';
import { encodeEnvelope } from './envelope.js';
import { PERSIST_MODEL_NAME, type PersistState, persistStateModel } from './persist-model.js';
import { createTestConsensus } from './test-consensus.test-support.js';
import type { AppliedEvent, PublishEvent, ShardStateCacheOptions } from './types.js';
import { isRollupSeqno, rollupPhase } from './writer-loop.js';

const SHARD = 's00000000-0000-0000-0000-00000000000a';
/**
 * A shard whose rollup phase is 0 modulo 40: its rollups fall at the multiples of 2, 4, 5 and 8,
 * the intervals the rollup tests below count with.
 */
const ALIGNED = 's00000000-0000-0000-0000-00000000000b';

const addBatch =
  (id: string) =>
  (s: PersistState): PersistState => ({
    ...s,
    upper: [BigInt(s.batches.size + 1)],
    batches: new Map(s.batches).set(id, {
      lower: s.upper,
      upper: [BigInt(s.batches.size + 1)],
      since: [0n],
      partKeys: [id],
      len: 1n,
    }),
  });

/** A writer cache on a memory Consensus that commits `n` versions and keeps their pushes. */
async function setup(n: number, readerOptions: Partial<ShardStateCacheOptions> = {}) {
  const memory = createMemoryConsensus();
  const pushes: PublishEvent[] = [];
  const writer = createShardStateCache({
    consensus: memory,
    hooks: { publish: (e) => pushes.push(e) },
  });
  const w = await writer.open<PersistState>(SHARD);
  const states: PersistState[] = [w.state];
  const commit = async (count: number) => {
    for (let i = 0; i < count; i++) {
      const r = await w.update(addBatch(`b${states.length}`));
      states.push(r.state);
    }
  };
  const consensus = createTestConsensus(memory);
  const clock = createFakeClock();
  const registry = new Registry();
  const applied: AppliedEvent[] = [];
  const reader = createShardStateCache({
    consensus,
    clock,
    registry,
    random: () => 0.5,
    hooks: { onApplied: (e) => applied.push(e) },
    ...readerOptions,
  });
  const r = await reader.open<PersistState>(SHARD);
  consensus.scans.length = 0;
  await commit(n);
  const metric = async (name: string) => {
    const m = await registry.getSingleMetric(name)?.get();
    return m?.values ?? [];
  };
  const sum = async (name: string, labels: Record<string, string> = {}) =>
    (await metric(name))
      .filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
      .reduce((a, v) => a + v.value, 0);
  return { memory, consensus, clock, pushes, states, writer, w, reader, r, commit, applied, sum };
}

/** When the reader's next `count` Consensus reads start, in ms from now (the fake clock, 1 ms steps). */
async function pollTimes(t: Awaited<ReturnType<typeof setup>>, count: number): Promise<number[]> {
  const times: number[] = [];
  const start = t.clock.nowMs();
  for (let i = 0; i < count; i++) {
    const before = t.consensus.scans.length;
    while (t.consensus.scans.length === before) await t.clock.advance(1);
    times.push(t.clock.nowMs() - start);
  }
  return times;
}

const eq = (a: PersistState, b: PersistState | undefined) =>
  b !== undefined && persistStateModel.equals(a, b);

describe('applying pushed diffs', () => {
  it('holds diffs ahead of the next seqno for the window, then fetches exactly the gap', async () => {
    const t = await setup(5);
    const p = t.pushes;
    expect(t.reader.receiveDiff(SHARD, 1n, p[0]!.diff)).toBe('applied');
    expect(t.reader.receiveDiff(SHARD, 4n, p[3]!.diff)).toBe('held');
    expect(t.reader.receiveDiff(SHARD, 5n, p[4]!.diff)).toBe('held');
    expect(t.r.seqno).toBe(1n);
    await t.clock.advance(4);
    expect(t.consensus.scans).toEqual([]);
    await t.clock.advance(1);
    expect(t.consensus.scans).toEqual([{ from: 2n, limit: 2, returned: 2 }]);
    expect(t.r.seqno).toBe(5n);
    expect(eq(t.r.state, t.states[5])).toBe(true);
    expect(await t.sum('persist_pubsub_state_diff_out_of_order_total')).toBe(2);
    expect(await t.sum('persist_pubsub_state_diff_applied_total')).toBe(3); // 1, then held 4, 5
    expect(await t.sum('persist_pubsub_state_fetch_total', { path: 'fast' })).toBe(1);
    expect(await t.sum('persist_pubsub_state_consensus_reads_total', { reason: 'gap' })).toBe(1);
    expect(t.applied.map((e) => [e.seqno, e.source, e.reason])).toEqual([
      [1n, 'pubsub', 'pubsub'],
      [2n, 'fetch', 'gap'],
      [3n, 'fetch', 'gap'],
      [4n, 'pubsub', 'pubsub'],
      [5n, 'pubsub', 'pubsub'],
    ]);
    // Without an origin timestamp from the transport, the origin is the envelope's wall time,
    // taken before the compare-and-set; the publish hook's commit time is taken after it.
    const origin = t.applied[0]?.originTimestampMs ?? Number.NaN;
    expect(origin).toBeGreaterThan(0);
    expect(origin).toBeLessThanOrEqual(t.pushes[0]!.commitTimeMs);
  });

  it('applies a gap filled within the window without reading Consensus', async () => {
    const t = await setup(3);
    const p = t.pushes;
    expect(t.reader.receiveDiff(SHARD, 3n, p[2]!.diff)).toBe('held');
    expect(t.reader.receiveDiff(SHARD, 2n, p[1]!.diff)).toBe('held');
    await t.clock.advance(2);
    expect(t.reader.receiveDiff(SHARD, 1n, p[0]!.diff)).toBe('applied');
    expect(t.r.seqno).toBe(3n);
    await t.clock.advance(100);
    expect(t.consensus.scans).toEqual([]);
    expect(eq(t.r.state, t.states[3])).toBe(true);
    expect(
      await t.sum('persist_pubsub_state_gap_to_applied_seconds', { resolution: 'pubsub' }),
    ).toBeGreaterThan(0);
  });

  it('past maxHeldDiffs reads the gap at once instead of holding more', async () => {
    const t = await setup(6, { config: { maxHeldDiffs: 2, reorderWindowMs: 1000 } });
    expect(t.reader.receiveDiff(SHARD, 4n, t.pushes[3]!.diff)).toBe('held');
    expect(t.reader.receiveDiff(SHARD, 5n, t.pushes[4]!.diff)).toBe('held');
    expect(t.reader.receiveDiff(SHARD, 6n, t.pushes[5]!.diff)).toBe('refetch');
    await t.clock.advance(0);
    expect(t.consensus.scans).toEqual([{ from: 1n, limit: 3, returned: 3 }]);
    expect(t.r.seqno).toBe(5n);
    expect(eq(t.r.state, t.states[5])).toBe(true);
  });

  it('with a zero window fetches the gap at once', async () => {
    const t = await setup(3, { config: { reorderWindowMs: 0 } });
    expect(t.reader.receiveDiff(SHARD, 3n, t.pushes[2]!.diff)).toBe('held');
    await t.clock.advance(0);
    expect(t.consensus.scans).toEqual([{ from: 1n, limit: 2, returned: 2 }]);
    expect(t.r.seqno).toBe(3n);
  });

  it('refuses garbage bytes and diffs that do not apply, refetches, and stays correct', async () => {
    const t = await setup(2);
    // Garbage.
    expect(t.reader.receiveDiff(SHARD, 1n, new Uint8Array([1, 2, 3, 250]))).toBe('refetch');
    // A valid envelope for seqno 1 whose diff deletes a batch that does not exist.
    const bad = encodeEnvelope({
      seqnoFrom: 0n,
      seqnoTo: 1n,
      wallTimeMs: 0,
      diff: persistStateModel.encodeDiff({
        upper: [],
        since: [],
        batches: [
          {
            key: 'nope',
            op: 'delete',
            old: { lower: [], upper: [], since: [], partKeys: [], len: 0n },
          },
        ],
        leasedReaders: [],
        writers: [],
      }),
      rollup: undefined,
      model: PERSIST_MODEL_NAME,
    });
    expect(t.reader.receiveDiff(SHARD, 1n, bad)).toBe('refetch');
    // A valid diff pushed under the wrong seqno, and an envelope of another model.
    expect(t.reader.receiveDiff(SHARD, 2n, t.pushes[0]!.diff)).toBe('refetch');
    const other = encodeEnvelope({
      seqnoFrom: 0n,
      seqnoTo: 1n,
      wallTimeMs: 0,
      diff: new Uint8Array(),
      rollup: undefined,
      model: 'other',
    });
    expect(t.reader.receiveDiff(SHARD, 1n, other)).toBe('refetch');
    // Not a bigint, not bytes.
    expect(t.reader.receiveDiff(SHARD, 1 as unknown as bigint, t.pushes[0]!.diff)).toBe('refetch');
    expect(t.reader.receiveDiff(SHARD, 1n, 'x' as unknown as Uint8Array)).toBe('refetch');
    await t.clock.advance(0);
    expect(t.r.seqno).toBe(2n);
    expect(eq(t.r.state, t.states[2])).toBe(true);
    expect(await t.sum('persist_pubsub_state_diff_invalid_total')).toBe(6);
    // Six refetch requests coalesced into at most two reads.
    expect(t.consensus.scans.length).toBeLessThanOrEqual(2);
    expect(t.reader.receiveDiff('s-not-open', 1n, t.pushes[0]!.diff)).toBe('not_open');
  });
});

describe('polling fallback', () => {
  it('keeps up by polling alone on the reference schedule, resetting after progress', async () => {
    const t = await setup(0);
    const wait = t.r.waitForSeqno(2n);
    let done = false;
    void wait.then(() => {
      done = true;
    });
    await t.commit(2); // committed, never pushed
    await t.clock.advance(1199);
    expect(t.consensus.scans).toEqual([]);
    await t.clock.advance(1);
    expect(done).toBe(true);
    expect(t.r.seqno).toBe(2n);
    expect(await t.sum('persist_pubsub_state_listen_woken_total', { via: 'timer' })).toBe(1);

    // Nothing new: polls at +1200, then +100, +200, +400 after each empty one.
    const wait3 = t.r.waitForSeqno(3n);
    expect(await pollTimes(t, 4)).toEqual([1200, 1300, 1500, 1900]);
    await t.commit(1);
    await t.clock.advance(800);
    await wait3;
    expect(t.r.seqno).toBe(3n);
    // The open read of the empty shard, then the four empty polls.
    expect(await t.sum('persist_pubsub_state_fetch_total', { path: 'empty' })).toBe(5);
  });

  it('is woken by the watch when a pushed diff is applied', async () => {
    const t = await setup(1);
    const wait = t.r.waitForSeqno(1n);
    t.reader.receiveDiff(SHARD, 1n, t.pushes[0]!.diff);
    await wait;
    expect(await t.sum('persist_pubsub_state_listen_woken_total', { via: 'watch' })).toBe(1);
    expect(t.consensus.scans).toEqual([]);
  });

  it('applies a config change to a sleeping poller at once', async () => {
    const t = await setup(1);
    const wait = t.r.waitForSeqno(1n);
    await t.clock.advance(100);
    t.reader.setConfig({ pollFirstSleepMs: 150 });
    await t.clock.advance(49);
    expect(t.consensus.scans).toEqual([]);
    await t.clock.advance(1);
    await wait;
    expect(t.consensus.scans.length).toBe(1);
    expect(() => t.reader.setConfig({ pollFirstSleepMs: -5 })).toThrow(/pollFirstSleepMs/);
    expect(t.reader.config.pollFirstSleepMs).toBe(150);
  });

  it('stops polling when nobody waits, and rejects waits on abort and on close', async () => {
    const t = await setup(0);
    const ac = new AbortController();
    const wait = t.r.waitForSeqno(1n, { signal: ac.signal });
    ac.abort();
    await expect(wait).rejects.toMatchObject({ code: 'aborted' });
    expect(t.clock.pending()).toBe(0);
    const h2 = await t.reader.open<PersistState>(SHARD);
    const wait2 = h2.waitForSeqno(1n);
    h2.close();
    await expect(wait2).rejects.toMatchObject({ code: 'closed' });
    expect(t.clock.pending()).toBe(0);
    await expect(h2.update(addBatch('z'))).rejects.toMatchObject({ code: 'closed' });
  });
});

describe('waits on abort signals', () => {
  it('a reader waiting again on one signal after every diff keeps one listener, and its abort rejects only its waits', async () => {
    const t = await setup(3);
    const a = new AbortController();
    const listeners = countListeners(a.signal);
    for (let n = 1; n <= 2; n++) {
      const wait = t.r.waitForSeqno(BigInt(n), { signal: a.signal });
      t.reader.receiveDiff(SHARD, BigInt(n), t.pushes[n - 1]!.diff);
      await expect(wait).resolves.toMatchObject({ seqno: BigInt(n) });
    }
    // Two waits on `a` at once, and one on `b` while `a`'s are pending.
    const b = new AbortController();
    const onA1 = t.r.waitForSeqno(3n, { signal: a.signal });
    const onA2 = t.r.waitForSeqno(4n, { signal: a.signal });
    const onB = t.r.waitForSeqno(3n, { signal: b.signal });
    const plain = t.r.waitForSeqno(3n);
    expect(listeners()).toBe(1);
    b.abort();
    await expect(onB).rejects.toMatchObject({ code: 'aborted' });
    t.reader.receiveDiff(SHARD, 3n, t.pushes[2]!.diff);
    await expect(onA1).resolves.toMatchObject({ seqno: 3n });
    await expect(plain).resolves.toMatchObject({ seqno: 3n });
    a.abort();
    await expect(onA2).rejects.toMatchObject({ code: 'aborted' });
    expect(t.clock.pending()).toBe(0);
  });

  it('moves to another signal once the last one has no waits; an abort of the old one rejects nothing', async () => {
    const t = await setup(2);
    const a = new AbortController();
    const b = new AbortController();
    const first = t.r.waitForSeqno(1n, { signal: a.signal });
    t.reader.receiveDiff(SHARD, 1n, t.pushes[0]!.diff);
    await first;
    const onB = t.r.waitForSeqno(2n, { signal: b.signal });
    a.abort();
    t.reader.receiveDiff(SHARD, 2n, t.pushes[1]!.diff);
    await expect(onB).resolves.toMatchObject({ seqno: 2n });
    // Closed: a later abort of the watched signal finds nothing and throws nothing.
    const c = new AbortController();
    const onC = t.r.waitForSeqno(3n, { signal: c.signal });
    t.r.close();
    await expect(onC).rejects.toMatchObject({ code: 'closed' });
    c.abort();
  });
});

describe('following every version (onVersion)', () => {
  it('is called in the apply with each version in seqno order: pushed, held, fetched, local', async () => {
    const t = await setup(5);
    const seen: [bigint, string, boolean][] = [];
    const off = t.r.onVersion((v, source) => {
      seen.push([v.seqno, source, eq(v.state, t.states[Number(v.seqno)])]);
    });
    expect(seen).toEqual([]); // not called for the current version
    expect(t.reader.receiveDiff(SHARD, 1n, t.pushes[0]!.diff)).toBe('applied');
    expect(seen).toEqual([[1n, 'pubsub', true]]); // synchronously, before receiveDiff returned
    expect(t.reader.receiveDiff(SHARD, 4n, t.pushes[3]!.diff)).toBe('held');
    expect(t.reader.receiveDiff(SHARD, 5n, t.pushes[4]!.diff)).toBe('held');
    await t.clock.advance(5); // the reorder window: the gap 2..3 is read
    expect(seen.map(([s, src, ok]) => `${s} ${src} ${ok}`)).toEqual([
      '1 pubsub true',
      '2 fetch true',
      '3 fetch true',
      '4 pubsub true',
      '5 pubsub true',
    ]);
    // This process's own commit, through another handle of the same cache.
    const w = await t.reader.open<PersistState>(SHARD);
    await w.update(addBatch('local'));
    expect(seen.at(-1)?.slice(0, 2)).toEqual([6n, 'local']);
    expect(await t.sum('persist_pubsub_state_listen_woken_total', { via: 'watch' })).toBe(6);
    off();
    w.close();
    t.reader.receiveDiff(SHARD, 6n, t.pushes[0]!.diff); // stale; nothing called either way
    expect(seen.length).toBe(6);
  });

  it('keeps the polling fallback running exactly as a loop of waits does', async () => {
    const t = await setup(0);
    const seen: bigint[] = [];
    t.r.onVersion((v) => seen.push(v.seqno));
    await t.commit(2); // committed, never pushed
    await t.clock.advance(1199);
    expect(t.consensus.scans).toEqual([]);
    await t.clock.advance(1);
    expect(seen).toEqual([1n, 2n]);
    expect(await t.sum('persist_pubsub_state_listen_woken_total', { via: 'timer' })).toBe(2);
    // Nothing new: polls at +1200, then +100, +200, +400 after each empty one.
    expect(await pollTimes(t, 4)).toEqual([1200, 1300, 1500, 1900]);
    // Progress (a pushed diff) starts the schedule over with a first sleep.
    await t.commit(1);
    t.reader.receiveDiff(SHARD, 3n, t.pushes[2]!.diff);
    expect(seen).toEqual([1n, 2n, 3n]);
    const scans = t.consensus.scans.length;
    await t.clock.advance(1199);
    expect(t.consensus.scans.length).toBe(scans);
    await t.clock.advance(1);
    expect(t.consensus.scans.length).toBe(scans + 1);
    t.r.close(); // the last follower goes with its handle: no more polls
    expect(t.clock.pending()).toBe(0);
  });

  it('an exception in a callback is caught, logged and counted; the apply and the others go on', async () => {
    const errors: unknown[] = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => errors.push(line) });
    const t = await setup(2, { logger });
    const after: bigint[] = [];
    t.r.onVersion(() => {
      throw new Error('boom');
    });
    t.r.onVersion((v) => after.push(v.seqno));
    expect(t.reader.receiveDiff(SHARD, 1n, t.pushes[0]!.diff)).toBe('applied');
    expect(t.reader.receiveDiff(SHARD, 2n, t.pushes[1]!.diff)).toBe('applied');
    expect(t.r.seqno).toBe(2n);
    expect(after).toEqual([1n, 2n]);
    expect(await t.sum('persist_pubsub_state_follower_errors_total')).toBe(2);
    expect(errors.length).toBe(2);
    expect(String(errors[0])).toMatch(/"message":"boom".*"msg":"an onVersion callback threw"/);
  });

  it('ends on unsubscribe (also from inside a callback), abort, handle close and cache close', async () => {
    const t = await setup(4);
    const h2 = await t.reader.open<PersistState>(SHARD);
    const ac = new AbortController();
    const listeners = countListeners(ac.signal);
    const calls: Record<string, bigint[]> = { self: [], signal: [], h2: [], cache: [] };
    let offSelf: () => void = () => {};
    // One callback unsubscribes itself at seqno 1; the one after it in line is still called.
    offSelf = t.r.onVersion((v) => {
      calls.self?.push(v.seqno);
      offSelf();
    });
    for (let i = 0; i < 100; i++) {
      t.r.onVersion((v) => (i === 0 ? calls.signal?.push(v.seqno) : 0), { signal: ac.signal });
    }
    expect(listeners()).toBe(1); // one listener for the 100 callbacks on one signal
    h2.onVersion((v) => calls.h2?.push(v.seqno));
    t.r.onVersion((v) => calls.cache?.push(v.seqno));
    t.reader.receiveDiff(SHARD, 1n, t.pushes[0]!.diff);
    ac.abort();
    expect(listeners()).toBe(0);
    t.reader.receiveDiff(SHARD, 2n, t.pushes[1]!.diff);
    h2.close();
    t.reader.receiveDiff(SHARD, 3n, t.pushes[2]!.diff);
    t.reader.close();
    expect(calls).toEqual({ self: [1n], signal: [1n], h2: [1n, 2n], cache: [1n, 2n, 3n] });
    expect(t.clock.pending()).toBe(0);
    expect(() => h2.onVersion(() => {})).toThrow(expect.objectContaining({ code: 'closed' }));
    // An aborted signal registers nothing (and no listener).
    const t2 = await setup(1);
    const aborted = AbortSignal.abort();
    const seen: bigint[] = [];
    t2.r.onVersion((v) => seen.push(v.seqno), { signal: aborted })();
    t2.reader.receiveDiff(SHARD, 1n, t2.pushes[0]!.diff);
    expect(seen).toEqual([]);
    expect(t2.clock.pending()).toBe(0);
    expect(() => t2.r.onVersion('x' as never)).toThrow(
      expect.objectContaining({ code: 'invalid_argument' }),
    );
  });

  it('a callback that applies a newer version synchronously: nobody sees seqnos go back', async () => {
    const t = await setup(2);
    const seen: Record<string, bigint[]> = { a: [], b: [] };
    t.r.onVersion((v) => {
      seen.a?.push(v.seqno);
      if (v.seqno === 1n) t.reader.receiveDiff(SHARD, 2n, t.pushes[1]!.diff);
    });
    t.r.onVersion((v) => seen.b?.push(v.seqno));
    t.reader.receiveDiff(SHARD, 1n, t.pushes[0]!.diff);
    expect(seen).toEqual({ a: [1n, 2n], b: [2n] });
  });

  it('followers coming and going (none, one, two, one, none, one): each version reaches those following', async () => {
    const t = await setup(6);
    const seen: Record<string, bigint[]> = { a: [], b: [], c: [] };
    const follow = (name: string) => t.r.onVersion((v) => seen[name]?.push(v.seqno));
    const apply = (seqno: number) =>
      t.reader.receiveDiff(SHARD, BigInt(seqno), t.pushes[seqno - 1]!.diff);
    apply(1); // nobody follows
    const offA = follow('a');
    apply(2); // a alone
    const offB = follow('b');
    apply(3); // a and b
    offA();
    apply(4); // b alone, the one left of two
    offB();
    apply(5); // nobody again
    follow('c');
    apply(6); // c alone
    expect(seen).toEqual({ a: [2n, 3n], b: [3n, 4n], c: [6n] });
  });
});

describe('closing the cache', () => {
  it('rejects pending waits with closed and ends listen loops', async () => {
    const t = await setup(0);
    const wait = t.r.waitForSeqno(5n);
    const loop = (async () => {
      const seen: bigint[] = [];
      for await (const v of t.r.listen()) seen.push(v.seqno);
      return seen;
    })();
    await t.clock.advance(0);
    t.reader.close();
    await expect(wait).rejects.toMatchObject({ code: 'closed' });
    expect(await loop).toEqual([0n]);
    expect(t.clock.pending()).toBe(0);
    await expect(t.reader.open(SHARD)).rejects.toMatchObject({ code: 'closed' });
  });
});

describe('writer path', () => {
  it('retries a lost compare-and-set on the 4 ms doubling schedule of the fake clock', async () => {
    const t = await setup(0);
    t.consensus.casFaults = ['mismatch', 'mismatch', 'mismatch'];
    let result: Awaited<ReturnType<typeof t.r.update>> | undefined;
    void t.r.update(addBatch('x')).then((r) => {
      result = r;
    });
    await t.clock.advance(3);
    expect(t.consensus.casCalls.length).toBe(1);
    await t.clock.advance(1); // 4 ms
    expect(t.consensus.casCalls.length).toBe(2);
    await t.clock.advance(7);
    expect(t.consensus.casCalls.length).toBe(2);
    await t.clock.advance(1); // +8 ms
    expect(t.consensus.casCalls.length).toBe(3);
    await t.clock.advance(16); // +16 ms
    expect(result).toMatchObject({ outcome: 'committed', seqno: 1n, attempts: 4 });
    expect(await t.sum('persist_pubsub_state_commits_total', { outcome: 'mismatch' })).toBe(3);
  });

  it('applies a backoff config change to a sleeping writer at once', async () => {
    const t = await setup(0);
    t.consensus.casFaults = ['mismatch', 'mismatch', 'mismatch', 'mismatch', 'mismatch'];
    let result: Awaited<ReturnType<typeof t.r.update>> | undefined;
    void t.r.update(addBatch('x')).then((r) => {
      result = r;
    });
    await t.clock.advance(4 + 8 + 16 + 32); // four retries
    expect(t.consensus.casCalls.length).toBe(5);
    // Sleeping 64 ms now; a new cap of 10 ms wakes it 10 ms after the sleep began.
    t.reader.setConfig({ writerMaxBackoffMs: 10, writerInitialBackoffMs: 1 });
    await t.clock.advance(9);
    expect(t.consensus.casCalls.length).toBe(5);
    await t.clock.advance(1);
    expect(t.consensus.casCalls.length).toBe(6);
    await t.clock.advance(10);
    expect(result).toMatchObject({ outcome: 'committed', attempts: 6 });
  });

  it('loses a real race, reads the winner, and commits on top of it', async () => {
    const t = await setup(0);
    await t.commit(2); // the other writer moves on; the reader's cache is at 0
    const p = t.r.update(addBatch('mine'));
    // The re-read happens on the mismatch; the retry then waits 4 ms of fake time.
    await t.clock.advance(4);
    const r = await p;
    expect(t.consensus.casCalls.map((c) => c.expected)).toEqual([null, 2n]);
    expect(r.outcome).toBe('committed');
    expect(r.seqno).toBe(3n);
    expect(r.state.batches.size).toBe(3);
  });

  it('on an indeterminate error re-reads: committed if it landed, retried if it did not', async () => {
    const t = await setup(0);
    t.consensus.casFaults = ['indeterminate_after_write'];
    const r1 = await t.r.update(addBatch('a'));
    expect(r1).toMatchObject({ outcome: 'committed', seqno: 1n, attempts: 1 });
    t.consensus.casFaults = ['indeterminate_no_write'];
    const p2 = t.r.update(addBatch('b'));
    await t.clock.advance(4);
    const r2 = await p2;
    expect(r2).toMatchObject({ outcome: 'committed', seqno: 2n, attempts: 2 });
    expect((await t.memory.head(SHARD))?.seqno).toBe(2n);
    expect(await t.sum('persist_pubsub_state_commits_total', { outcome: 'indeterminate' })).toBe(2);
  });

  it('a state the model cannot encode is a clear error, and nothing is written', async () => {
    const t = await setup(0);
    const bad = (s: PersistState): PersistState => ({
      ...s,
      writers: new Map(s.writers).set('w', {
        lastHeartbeatMs: 1.5, // not an integer number of ms
        leaseDurationMs: 1,
        mostRecentWriteUpper: [],
        debug: '',
      }),
    });
    await expect(t.r.update(bad)).rejects.toMatchObject({ code: 'invalid_argument' });
    expect(await t.memory.head(SHARD)).toBeUndefined();
    const thrown = new Error('mine');
    await expect(
      t.r.update(() => {
        throw thrown;
      }),
    ).rejects.toBe(thrown);
  });

  it('a function that changes nothing commits nothing', async () => {
    const t = await setup(1);
    const r = await t.w.update((s) => s);
    expect(r.outcome).toBe('noop');
    const r2 = await t.w.update((s) => ({ ...s }));
    expect(r2.outcome).toBe('noop');
    expect((await t.memory.head(SHARD))?.seqno).toBe(1n);
  });
});

describe('rollup placement', () => {
  it("the rollup tests' shard has phase 0 modulo 40", () => {
    expect(rollupPhase(ALIGNED) % 40n).toBe(0n);
  });

  it('one rollup in every interval of versions, the first version always one', () => {
    for (const id of [SHARD, ALIGNED, 's00000000-0000-0000-0000-0000000015ec']) {
      const phase = rollupPhase(id);
      expect(isRollupSeqno(1n, 32, phase)).toBe(true);
      for (let from = 2n; from < 200n; from++) {
        let n = 0;
        for (let s = from; s < from + 32n; s++) if (isRollupSeqno(s, 32, phase)) n++;
        expect(n).toBe(1);
      }
    }
  });

  it('shards in lockstep spread their rollups over the interval', () => {
    // 1000 shards, as in the e2e bench: created together, one commit each per round.
    const phases = Array.from({ length: 1000 }, (_, i) => rollupPhase(`s${i}-bench-shard`));
    const perRound = new Map<bigint, number>();
    for (let round = 2n; round <= 33n; round++) {
      for (const phase of phases) {
        if (isRollupSeqno(round, 32, phase)) perRound.set(round, (perRound.get(round) ?? 0) + 1);
      }
    }
    const counts = [...perRound.values()];
    expect(counts.reduce((a, b) => a + b, 0)).toBe(1000); // each shard once in 32 rounds
    expect(perRound.size).toBe(32); // every round holds some
    expect(Math.max(...counts)).toBeLessThan((1000 / 32) * 3); // none holds the whole fleet
  });
});

describe('rollups and opening', () => {
  it('writes a rollup every N versions, truncates behind it, and opens from it', async () => {
    const memory = createMemoryConsensus();
    const writer = createShardStateCache({ consensus: memory, config: { rollupInterval: 4 } });
    const w = await writer.open<PersistState>(ALIGNED);
    for (let i = 0; i < 22; i++) await w.update(addBatch(`b${i}`));
    await new Promise((r) => setImmediate(r)); // best-effort truncation is not awaited
    const log = await memory.scan(ALIGNED, 0n, 1000);
    expect(log[0]?.seqno).toBe(20n); // truncated behind the newest rollup
    expect(log.length).toBe(3);
    const consensus = createTestConsensus(memory);
    const reader = createShardStateCache({ consensus, config: { fetchBatchSize: 3 } });
    const r = await reader.open<PersistState>(ALIGNED);
    expect(r.seqno).toBe(22n);
    expect(persistStateModel.equals(r.state, w.state)).toBe(true);
    const read = consensus.scans.reduce((a, s) => a + s.returned, 0);
    expect(read).toBeLessThanOrEqual(4);
  });

  it("shards that reach a rollup together truncate a few per turn, not in the commits' turn", async () => {
    const memory = createMemoryConsensus();
    const started: string[] = [];
    const truncate = memory.truncate.bind(memory);
    memory.truncate = (key, seqno, options) => {
      started.push(`${key}@${seqno}`);
      return truncate(key, seqno, options);
    };
    const writer = createShardStateCache({ consensus: memory, config: { rollupInterval: 2 } });
    // Ten shards whose version 2 is a rollup (an even phase): e.g. created together, in lockstep.
    const ids = Array.from({ length: 60 }, (_, i) => `${ALIGNED.slice(0, -2)}${10 + i}`)
      .filter((id) => isRollupSeqno(2n, 2, rollupPhase(id)))
      .slice(0, 10);
    expect(ids).toHaveLength(10);
    const handles = await Promise.all(ids.map((id) => writer.open<PersistState>(id)));
    // Every shard commits versions 1 and 2 (a rollup) in one turn.
    await Promise.all(
      handles.map(async (h) => {
        await h.update(addBatch('a'));
        await h.update(addBatch('b'));
      }),
    );
    expect(started).toEqual([]);
    const turn = () => new Promise((r) => setImmediate(r));
    await turn();
    expect(started).toHaveLength(4); // DEFAULT_BACKGROUND_TASKS_PER_TURN
    await turn();
    expect(started).toHaveLength(8);
    await turn();
    expect(started.sort()).toEqual(ids.map((id) => `${id}@2`).sort());
    for (const id of ids) expect((await memory.scan(id, 0n, 10))[0]?.seqno).toBe(2n);
    writer.close();
  });

  it('a writer that never yields to the event loop still truncates: the log stays bounded', async () => {
    const memory = createMemoryConsensus();
    const writer = createShardStateCache({ consensus: memory, config: { rollupInterval: 4 } });
    const w = await writer.open<PersistState>(ALIGNED);
    // The memory store answers in microtasks: no turn of the background queue in this loop.
    for (let i = 0; i < 200; i++) await w.update(addBatch(`b${i}`));
    const log = await memory.scan(ALIGNED, 0n, 1000);
    // A queued truncation waits at most until the next rollup: the log keeps
    // at most two intervals and a bit, never the 200 versions written.
    expect(log.length).toBeLessThanOrEqual(9);
    expect(log[0]!.seqno % 4n).toBe(0n); // the earliest live entry is a rollup
    writer.close();
  });

  it('a reader left behind by truncation catches up from the rollup (slow path)', async () => {
    const memory = createMemoryConsensus();
    const registry = new Registry();
    const writer = createShardStateCache({ consensus: memory, config: { rollupInterval: 2 } });
    const reader = createShardStateCache({ consensus: memory, registry });
    const w = await writer.open<PersistState>(ALIGNED);
    const r = await reader.open<PersistState>(ALIGNED);
    for (let i = 0; i < 9; i++) await w.update(addBatch(`b${i}`));
    await new Promise((res) => setImmediate(res));
    expect((await memory.scan(ALIGNED, 0n, 1))[0]?.seqno).toBe(8n);
    await r.refresh();
    expect(r.seqno).toBe(9n);
    expect(persistStateModel.equals(r.state, w.state)).toBe(true);
    const slow = (
      await registry.getSingleMetric('persist_pubsub_state_fetch_total')?.get()
    )?.values.find((v) => v.labels.path === 'slow')?.value;
    expect(slow).toBe(1);
  });
});

describe('failures', () => {
  it('a failing Consensus does not turn a held gap into a read storm', async () => {
    const t = await setup(3);
    const scan = t.consensus.scan;
    let failing = true;
    t.consensus.scan = async (...args) => {
      if (failing) throw new Error('injected: Consensus down');
      return scan(...args);
    };
    expect(t.reader.receiveDiff(SHARD, 3n, t.pushes[2]!.diff)).toBe('held');
    let attempts = 0;
    const counting = t.consensus.scan;
    t.consensus.scan = (...args) => {
      attempts++;
      return counting(...args);
    };
    await t.clock.advance(10_000);
    // Window, then 100, 200, ..., 6400 ms apart: 8 tries in 10 s, not 2000.
    expect(attempts).toBeGreaterThanOrEqual(5);
    expect(attempts).toBeLessThanOrEqual(10);
    expect(t.r.seqno).toBe(0n);
    failing = false;
    await t.clock.advance(16_000);
    expect(t.r.seqno).toBe(3n);
    expect(eq(t.r.state, t.states[3])).toBe(true);
  });

  it('a corrupt version in Consensus stops reads there: never applied, never a crash', async () => {
    const t = await setup(2);
    await t.memory.compareAndSet(SHARD, 2n, { seqno: 3n, data: new Uint8Array([7, 7, 7]) });
    await t.r.refresh();
    expect(t.r.seqno).toBe(2n); // versions 1 and 2 applied, the corrupt 3 refused
    expect(eq(t.r.state, t.states[2])).toBe(true);
    await expect(t.w.update(addBatch('after'))).rejects.toMatchObject({ code: 'corrupt_log' });
    const other = createShardStateCache({ consensus: t.memory });
    await expect(other.open(SHARD)).rejects.toMatchObject({ code: 'corrupt_log' });
    expect(other.openShards()).toEqual([]);
  });

  it('a rollup interval changed at runtime keeps the earliest live entry a rollup', async () => {
    const memory = createMemoryConsensus();
    const writer = createShardStateCache({ consensus: memory, config: { rollupInterval: 8 } });
    const w = await writer.open<PersistState>(ALIGNED);
    for (let i = 0; i < 12; i++) await w.update(addBatch(`a${i}`));
    writer.setConfig({ rollupInterval: 5 });
    for (let i = 0; i < 12; i++) await w.update(addBatch(`b${i}`));
    await new Promise((r) => setImmediate(r));
    const log = await memory.scan(ALIGNED, 0n, 100);
    expect(log[0]?.seqno).toBe(20n);
    const reader = createShardStateCache({ consensus: memory });
    const r = await reader.open<PersistState>(ALIGNED);
    expect(r.seqno).toBe(24n);
    expect(persistStateModel.equals(r.state, w.state)).toBe(true);
  });

  it('a hook that throws is logged, never propagated', async () => {
    const consensus = createMemoryConsensus();
    const boom = () => {
      throw new Error('hook failed');
    };
    const cache = createShardStateCache({
      consensus,
      hooks: { onSubscribe: boom, publish: boom, onApplied: boom, onUnsubscribe: boom },
    });
    const h = await cache.open<PersistState>(SHARD);
    const r = await h.update(addBatch('x'));
    expect(r.outcome).toBe('committed');
    h.close();
    expect(cache.openShards()).toEqual([]);
  });

  it('counts open shards across caches sharing a registry', async () => {
    const registry = new Registry();
    const consensus = createMemoryConsensus();
    const a = createShardStateCache({ consensus, registry });
    const b = createShardStateCache({ consensus, registry });
    await a.open(SHARD);
    await b.open(SHARD);
    await b.open(`${SHARD}-2`);
    const gauge = async () =>
      (await registry.getSingleMetric('persist_pubsub_state_open_shards')?.get())?.values[0]?.value;
    expect(await gauge()).toBe(3);
    b.close();
    expect(await gauge()).toBe(1);
  });
});

describe('handles', () => {
  it('listen yields increasing seqnos and leaving the loop releases the shard', async () => {
    const unsubs: string[] = [];
    const t = await setup(3, { hooks: { onUnsubscribe: (id) => unsubs.push(id) } });
    const seen: bigint[] = [];
    const loop = (async () => {
      for await (const v of t.r.listen()) {
        seen.push(v.seqno);
        if (v.seqno >= 3n) break;
      }
    })();
    await t.clock.advance(0);
    t.reader.receiveDiff(SHARD, 1n, t.pushes[0]!.diff);
    await t.clock.advance(0);
    t.reader.receiveDiff(SHARD, 2n, t.pushes[1]!.diff);
    t.reader.receiveDiff(SHARD, 3n, t.pushes[2]!.diff);
    await loop;
    for (let i = 1; i < seen.length; i++) expect(seen[i]! > seen[i - 1]!).toBe(true);
    expect(seen[0]).toBe(0n);
    expect(seen.at(-1)).toBe(3n);
    t.r.close();
    expect(unsubs).toEqual([SHARD]);
  });

  it('refuses a second model on an open shard, and coalesces fetchNow calls', async () => {
    const t = await setup(2);
    const other = { ...persistStateModel, name: 'other' };
    await expect(t.reader.open(SHARD, other)).rejects.toMatchObject({ code: 'model_mismatch' });
    let release!: () => void;
    t.consensus.scanGate = new Promise((r) => {
      release = r;
    });
    const calls = Array.from({ length: 20 }, () => t.reader.fetchNow(SHARD, 'gap_notice'));
    release();
    t.consensus.scanGate = undefined;
    await Promise.all(calls);
    expect(t.consensus.scans.length).toBe(2);
    expect(t.r.seqno).toBe(2n);
    await expect(t.reader.fetchNow(SHARD, 'bogus' as 'refresh')).rejects.toMatchObject({
      code: 'invalid_argument',
    });
  });
});
