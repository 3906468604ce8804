/**
 * The checker and the fault transport can fail: a wrong state, a repeated seqno, a seqno past
 * the log and a gap in the log are each reported; fault decisions replay from the seed.
 */
import { describe, expect, it } from 'vitest';
import type { InboundMessage, PubSubTransport } from '../../src/client/index.js';
import { createMemoryConsensus } from '../../src/consensus/index.js';
import { encodeEnvelope } from '../../src/shard-state/envelope.js';
import type { ShardHandle } from '../../src/shard-state/index.js';
import { createChecker } from './checker.js';
import { createFaultConsensus } from './fault-consensus.js';
import { type ChainState, chainModel } from './fault-model.js';
import { createFaultTransport, decide, NO_FAULTS } from './fault-transport.js';

const SHARD = 's00000000-0000-4000-8000-00000000c4ec';

async function logOf(n: number) {
  const consensus = createMemoryConsensus();
  let state = chainModel.initial();
  const states = [state];
  for (let i = 1; i <= n; i++) {
    const diff = { w: 'w', i };
    state = chainModel.apply(state, diff);
    states.push(state);
    const data = encodeEnvelope({
      seqnoFrom: BigInt(i - 1),
      seqnoTo: BigInt(i),
      wallTimeMs: 0,
      diff: chainModel.encodeDiff(diff),
      rollup: undefined,
      model: chainModel.name,
    });
    expect(
      await consensus.compareAndSet(SHARD, i === 1 ? null : BigInt(i - 1), {
        seqno: BigInt(i),
        data,
      }),
    ).toBe('committed');
  }
  return { consensus, states };
}

describe('checker', () => {
  it('accepts states that fold from the log', async () => {
    const { consensus, states } = await logOf(5);
    const c = createChecker(chainModel, consensus);
    c.observe('r', SHARD, { seqno: 0n, state: states[0]! });
    c.observe('r', SHARD, { seqno: 3n, state: states[3]! });
    c.observe('r', SHARD, { seqno: 5n, state: states[5]! });
    const report = await c.verify();
    expect(report.divergences).toEqual([]);
    expect(report.logVersions).toBe(5);
  });

  it('reports a wrong state, a seqno that does not increase and one past the log', async () => {
    const { consensus, states } = await logOf(4);
    const c = createChecker(chainModel, consensus);
    c.observe('r', SHARD, { seqno: 2n, state: states[3]! });
    c.observe('r', SHARD, { seqno: 2n, state: states[2]! });
    c.observe('q', SHARD, { seqno: 9n, state: states[4]! });
    const kinds = (await c.verify()).divergences.map((d) => d.kind).sort();
    expect(kinds).toEqual(['beyond_log', 'seqno_not_increasing', 'state_mismatch']);
  });

  it('reports an onVersion follower that is behind its handle', async () => {
    const { consensus, states } = await logOf(3);
    const c = createChecker(chainModel, consensus);
    // A handle whose seqno moves without telling its callback (what a lost callback looks like).
    let seqno = 1n;
    let callback: ((v: { seqno: bigint; state: unknown }) => void) | undefined;
    const handle = {
      shardId: SHARD,
      get seqno() {
        return seqno;
      },
      snapshot: () => ({ seqno, state: states[Number(seqno)]! }),
      onVersion: (fn: typeof callback) => {
        callback = fn;
        return () => {};
      },
    } as unknown as ShardHandle<ChainState>;
    const ac = new AbortController();
    const done = c.followVersions('r', handle, ac.signal);
    seqno = 2n;
    callback?.({ seqno, state: states[2]! });
    seqno = 3n; // applied, never reported
    ac.abort();
    await done;
    const d = (await c.verify()).divergences;
    expect(d.map((x) => [x.kind, x.detail])).toEqual([
      ['follower_behind', 'at the end: last observed 2, the handle is at 3'],
    ]);
  });

  it('reports a truncated (gapped) log', async () => {
    const { consensus, states } = await logOf(4);
    await consensus.truncate(SHARD, 3n);
    const c = createChecker(chainModel, consensus);
    c.observe('r', SHARD, { seqno: 4n, state: states[4]! });
    const d = (await c.verify()).divergences;
    expect(d.map((x) => x.kind)).toContain('log_gap');
  });
});

describe('fault transport', () => {
  function fakeInner(
    delivered: InboundMessage[][],
  ): PubSubTransport & { feed(m: InboundMessage): void } {
    let on: ((m: InboundMessage) => void) | undefined;
    return {
      kind: 'fake',
      feed: (m) => on?.(m),
      async connect(o) {
        on = o.onMessage;
        delivered.push([]);
        return {
          subscribe: () => 1,
          unsubscribe: () => 1,
          push: () => 1,
          bufferedBytes: () => 0,
          close() {},
        };
      },
    };
  }
  const msg = (seqno: bigint): InboundMessage => ({
    kind: 'diff',
    shardId: SHARD,
    seqno,
    diff: new Uint8Array(),
    originTimestampMs: undefined,
    brokerTimestampMs: undefined,
    bytes: 1,
  });

  async function run(seed: number) {
    const out: InboundMessage[][] = [];
    const inner = fakeInner(out);
    const got: bigint[] = [];
    const t = createFaultTransport(inner, seed, 'r', {
      drop: 0.2,
      duplicate: 0.2,
      reorder: 0.2,
      delay: 0,
      maxDelayMs: 1,
      cut: 0,
    });
    await t.connect({
      signal: new AbortController().signal,
      onMessage: (m) => {
        if (m.kind === 'diff') got.push(m.seqno);
      },
      onClose() {},
    });
    for (let i = 1n; i <= 200n; i++) inner.feed(msg(i));
    await new Promise((r) => setTimeout(r, 20));
    t.setRates(NO_FAULTS);
    return { got, counts: { ...t.counts } };
  }

  it('drops, duplicates and reorders, and the same seed makes the same decisions', async () => {
    const a = await run(7);
    const b = await run(7);
    const c = await run(8);
    expect(a.counts.dropped).toBeGreaterThan(10);
    expect(a.counts.duplicated).toBeGreaterThan(10);
    expect(a.counts.reordered).toBeGreaterThan(10);
    expect(a.got).toEqual(b.got);
    expect(a.got).not.toEqual(c.got);
    expect(a.got.length).toBe(200 - a.counts.dropped + a.counts.duplicated);
    // Reordered: some seqno arrives after a larger one.
    expect(a.got.some((s, i) => i > 0 && s < (a.got[i - 1] as bigint))).toBe(true);
    expect(decide(1, 'x')).toBe(decide(1, 'x'));
  });
});

describe('fault consensus', () => {
  it('an applied-but-lost compare-and-set is indeterminate and did apply; a refused one did not', async () => {
    const inner = createMemoryConsensus();
    const data = new Uint8Array([1]);
    const lost = createFaultConsensus(inner, 1, 'a', {
      casRefused: 0,
      casAppliedLost: 1,
      casLost: 0,
      readFailed: 0,
    });
    await expect(lost.compareAndSet(SHARD, null, { seqno: 1n, data })).rejects.toMatchObject({
      code: 'indeterminate',
    });
    expect((await inner.head(SHARD))?.seqno).toBe(1n);
    const refused = createFaultConsensus(inner, 1, 'b', {
      casRefused: 1,
      casAppliedLost: 0,
      casLost: 0,
      readFailed: 1,
    });
    await expect(refused.compareAndSet(SHARD, 1n, { seqno: 2n, data })).rejects.toMatchObject({
      code: 'unavailable',
      determinate: true,
    });
    await expect(refused.scan(SHARD, 0n, 10)).rejects.toMatchObject({ code: 'unavailable' });
    expect((await inner.head(SHARD))?.seqno).toBe(1n);
    expect(lost.counts.casAppliedLost).toBe(1);
    expect(refused.counts).toMatchObject({ casRefused: 1, readFailed: 1 });
  });
});
