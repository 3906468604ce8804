import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { smallestAfter } from './page-select.js';

describe('smallestAfter', () => {
  it('equals sort-filter-slice for any keys, cursor and limit', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ maxLength: 6 }), { maxLength: 200 }),
        fc.option(fc.string({ maxLength: 6 }), { nil: undefined }),
        fc.integer({ min: 1, max: 50 }),
        (keys, after, limit) => {
          const expected = keys
            .filter((k) => after === undefined || k > after)
            .sort()
            .slice(0, limit);
          expect(smallestAfter(keys, after, limit)).toEqual(expected);
        },
      ),
    );
  });

  it('pages through every key exactly once', () => {
    const keys = Array.from({ length: 1000 }, (_, i) => `s${(i * 7919) % 1000}`);
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = smallestAfter(keys, after, 64);
      seen.push(...page);
      if (page.length < 64) break;
      after = page[page.length - 1];
    }
    expect(seen).toEqual([...new Set(keys)].sort());
  });
});
