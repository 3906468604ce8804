import { describe, expect, it } from 'vitest';
import { createMemoryConsensus } from '../consensus/index.js';
import { createShardStateCache } from './cache.js';
import { encodeEnvelope } from './envelope.js';
import { inspectShard } from './inspect.js';
import { type PersistState, persistStateModel } from './persist-model.js';

/** Rollup phase 0 modulo 5 (`rollupPhase`): its rollups fall at the multiples of 5 counted below. */
const SHARD = 's00000000-0000-0000-0000-00000000000b';

const setUpper = (n: number) => (s: PersistState) => ({ ...s, upper: [BigInt(n)] });

/** A shard with `n` versions written through the cache, rolled up every `rollupInterval`. */
async function written(n: number, rollupInterval: number) {
  const consensus = createMemoryConsensus();
  const cache = createShardStateCache({ consensus, config: { rollupInterval } });
  const h = await cache.open<PersistState>(SHARD);
  for (let i = 1; i <= n; i++) await h.update(setUpper(i));
  cache.close();
  return consensus;
}

describe('inspectShard', () => {
  it('rebuilds the head from the log and says what is retained', async () => {
    const consensus = await written(23, 5);
    const v = await inspectShard(consensus, SHARD, persistStateModel, { pageSize: 4 });
    expect(v.seqno).toBe(23n);
    expect(v.state.upper).toEqual([23n]);
    expect(v.model).toBe(persistStateModel.name);
    expect(v.retained.headSeqno).toBe(23n);
    expect(v.retained.lastRollupSeqno).toBe(20n);
    // Truncation keeps the log from a rollup on.
    expect(v.retained.earliestSeqno % 5n === 0n || v.retained.earliestSeqno === 1n).toBe(true);
    expect(v.retained.versions).toBe(Number(23n - v.retained.earliestSeqno + 1n));
    expect(v.fromRollupSeqno).toBe(v.retained.earliestSeqno);
  });

  it('--at rebuilds an older retained version, and refuses one that is not retained', async () => {
    const consensus = await written(23, 5);
    const head = await inspectShard(consensus, SHARD, persistStateModel);
    const at = head.retained.earliestSeqno + 1n;
    const v = await inspectShard(consensus, SHARD, persistStateModel, { atSeqno: at });
    expect(v.seqno).toBe(at);
    expect(v.state.upper).toEqual([at]);
    await expect(
      inspectShard(consensus, SHARD, persistStateModel, { atSeqno: 99n }),
    ).rejects.toMatchObject({ code: 'not_found', message: expect.stringMatching(/not retained/) });
    if (head.retained.earliestSeqno > 1n) {
      await expect(
        inspectShard(consensus, SHARD, persistStateModel, { atSeqno: 1n }),
      ).rejects.toMatchObject({ code: 'not_found' });
    }
  });

  it('a shard with no versions is not_found; another model or a broken log is corrupt_log', async () => {
    const consensus = await written(3, 5);
    await expect(
      inspectShard(consensus, 's00000000-0000-0000-0000-000000000000', persistStateModel),
    ).rejects.toMatchObject({ code: 'not_found' });
    const other = { ...persistStateModel, name: 'other-model' };
    await expect(inspectShard(consensus, SHARD, other)).rejects.toMatchObject({
      code: 'corrupt_log',
      message: expect.stringMatching(/model/),
    });
    const gap = createMemoryConsensus();
    const env = (seqno: bigint) =>
      encodeEnvelope({
        seqnoFrom: seqno - 1n,
        seqnoTo: seqno,
        wallTimeMs: 0,
        diff: persistStateModel.encodeDiff(
          persistStateModel.diff(persistStateModel.initial(), persistStateModel.initial()),
        ),
        rollup: undefined,
        model: persistStateModel.name,
      });
    await gap.compareAndSet(SHARD, null, { seqno: 2n, data: env(2n) });
    await expect(inspectShard(gap, SHARD, persistStateModel)).rejects.toMatchObject({
      code: 'corrupt_log',
      message: expect.stringMatching(/neither follows/),
    });
  });
});
