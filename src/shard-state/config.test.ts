import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SHARD_STATE_CONFIG as D,
  jitter,
  mergeConfig,
  pollDelayMs,
  writerDelayMs,
} from './config.js';
import { ShardStateError } from './errors.js';

describe('shard-state config', () => {
  it('follows the reference poll schedule: 1200 ms, then 100 ms doubling to 16 s', () => {
    const got = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 50].map((a) => pollDelayMs(D, a));
    expect(got).toEqual([1200, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 16000, 16000]);
  });

  it('follows the reference writer backoff: 4 ms doubling to 16 s', () => {
    const got = [0, 1, 2, 3, 11, 12, 13, 1000].map((r) => writerDelayMs(D, r));
    expect(got).toEqual([4, 8, 16, 32, 8192, 16000, 16000, 16000]);
  });

  it('jitters by a factor in [0.9, 1.1]', () => {
    expect(jitter(1000, 0.1, () => 0)).toBeCloseTo(900);
    expect(jitter(1000, 0.1, () => 0.5)).toBeCloseTo(1000);
    expect(jitter(1000, 0.1, () => 0.999999)).toBeCloseTo(1100, 2);
  });

  it('rejects a bad value naming the field, and leaves the base unchanged', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ reorderWindowMs: -1 }, /config\.reorderWindowMs/],
      [{ reorderWindowMs: Number.NaN }, /config\.reorderWindowMs/],
      [{ pollFirstSleepMs: 0 }, /config\.pollFirstSleepMs/],
      [{ rollupInterval: 1.5 }, /config\.rollupInterval/],
      [{ fetchBatchSize: 0 }, /config\.fetchBatchSize/],
      [{ pollJitterRatio: 1 }, /config\.pollJitterRatio/],
      [{ truncate: 'yes' }, /config\.truncate/],
      [{ bogus: 1 }, /config\.bogus is not a known field/],
      [{ pollInitialBackoffMs: 20_000 }, /pollInitialBackoffMs must not exceed/],
    ];
    for (const [partial, re] of bad) {
      let err: unknown;
      try {
        mergeConfig(D, partial);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ShardStateError);
      expect((err as ShardStateError).code).toBe('invalid_argument');
      expect((err as Error).message).toMatch(re);
    }
    expect(D.reorderWindowMs).toBe(5);
    expect(mergeConfig(D, { reorderWindowMs: 0, rollupInterval: 4 })).toMatchObject({
      reorderWindowMs: 0,
      rollupInterval: 4,
      pollFirstSleepMs: 1200,
    });
  });
});
