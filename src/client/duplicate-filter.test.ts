import { describe, expect, it } from 'vitest';
import { DUPLICATE_WINDOW, DuplicateFilter } from './duplicate-filter.js';

describe('DuplicateFilter', () => {
  it('passes the first copy of each seqno and drops the others, per shard', () => {
    const f = new DuplicateFilter();
    expect(f.firstSeen('s1', 1n)).toBe(true);
    expect(f.firstSeen('s1', 1n)).toBe(false);
    expect(f.firstSeen('s2', 1n)).toBe(true);
    expect(f.firstSeen('s1', 2n)).toBe(true);
    expect(f.firstSeen('s1', 1n)).toBe(false);
    expect(f.firstSeen('s1', 2n)).toBe(false);
  });

  it('passes a late seqno that was skipped (out of order across brokers) exactly once', () => {
    const f = new DuplicateFilter();
    expect(f.firstSeen('s', 5n)).toBe(true);
    expect(f.firstSeen('s', 7n)).toBe(true);
    expect(f.firstSeen('s', 6n)).toBe(true);
    expect(f.firstSeen('s', 6n)).toBe(false);
    expect(f.firstSeen('s', 7n)).toBe(false);
    expect(f.firstSeen('s', 5n)).toBe(false);
  });

  it('remembers exactly the window below the highest, and passes what is older', () => {
    const f = new DuplicateFilter();
    const top = 1000n;
    for (let s = top - BigInt(DUPLICATE_WINDOW); s <= top; s++)
      expect(f.firstSeen('s', s)).toBe(true);
    for (let s = top - BigInt(DUPLICATE_WINDOW); s <= top; s++)
      expect(f.firstSeen('s', s)).toBe(false);
    // Older than the window: passed (shard state finds it stale), never wrongly dropped.
    expect(f.firstSeen('s', top - BigInt(DUPLICATE_WINDOW) - 1n)).toBe(true);
  });

  it('shifts the window by any distance, including exactly its width and past it', () => {
    for (const jump of [1n, 2n, 31n, 32n, 33n, 1000n]) {
      const f = new DuplicateFilter();
      expect(f.firstSeen('s', 10n)).toBe(true);
      expect(f.firstSeen('s', 10n + jump)).toBe(true);
      const inWindow = jump <= BigInt(DUPLICATE_WINDOW);
      expect(f.firstSeen('s', 10n)).toBe(!inWindow);
      if (jump > 1n) {
        expect(f.firstSeen('s', 11n)).toBe(true);
        expect(f.firstSeen('s', 11n)).toBe(jump - 1n > BigInt(DUPLICATE_WINDOW));
      }
    }
  });

  it('forgets a shard', () => {
    const f = new DuplicateFilter();
    f.firstSeen('s', 3n);
    f.forget('s');
    expect(f.firstSeen('s', 3n)).toBe(true);
  });
});
