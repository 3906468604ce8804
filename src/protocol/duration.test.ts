import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { durationFromMs, msFromDuration } from './duration.js';

describe('duration', () => {
  it('splits ms since the epoch into secs and nanos, sub-ms kept', () => {
    expect(durationFromMs(1_700_000_000_250.5)).toEqual({
      secs: 1_700_000_000,
      nanos: 250_500_000,
    });
    expect(msFromDuration(1_700_000_000, 250_500_000)).toBe(1_700_000_000_250.5);
  });

  it('takes negative and non-finite times as 0', () => {
    for (const t of [-1, Number.NaN, Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY]) {
      expect(durationFromMs(t)).toEqual({ secs: 0, nanos: 0 });
    }
  });

  it('property: round-trips integer ms exactly, nanos always in [0, 1e9)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 47 }), (ms) => {
        const d = durationFromMs(ms);
        expect(d.nanos).toBeGreaterThanOrEqual(0);
        expect(d.nanos).toBeLessThan(1e9);
        expect(msFromDuration(d.secs, d.nanos)).toBe(ms);
      }),
    );
  });
});
