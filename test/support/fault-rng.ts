/**
 * A seeded random source for fault schedules: the same seed gives the same sequence of
 * decisions, so a failing schedule replays exactly from the seed it prints
 * (`FAULT_SEED=<seed> npx vitest run test/fault`).
 */

export interface Rng {
  /** The seed this source started from. */
  readonly seed: number;
  /** Uniform in [0, 1). */
  next(): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
  /** An integer in [min, max]. */
  int(min: number, max: number): number;
  /** One element of `items` (non-empty). */
  pick<T>(items: readonly T[]): T;
  /** An independent source derived from this one and `label` (e.g. one per reader). */
  fork(label: string): Rng;
}

/** mulberry32: a small, fast 32-bit generator; plenty for test schedules. */
export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    seed: seed >>> 0,
    next,
    chance: (p) => next() < p,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (items) => {
      if (items.length === 0) throw new Error('pick from an empty list');
      return items[Math.floor(next() * items.length)] as (typeof items)[number];
    },
    fork: (label) => {
      let h = 0x811c9dc5 ^ (seed >>> 0);
      for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193);
      return createRng(h >>> 0);
    },
  };
}

/**
 * The seeds a suite runs: `FAULT_SEED` (one seed, to replay a failure) or `count` seeds from
 * `FAULT_BASE_SEED` (default: random, printed) upward.
 */
export function scheduleSeeds(count: number): number[] {
  const one = process.env.FAULT_SEED;
  if (one !== undefined && one !== '') {
    const n = Number(one);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`FAULT_SEED=${one} is not a seed`);
    return [n >>> 0];
  }
  const baseEnv = process.env.FAULT_BASE_SEED;
  const base =
    baseEnv !== undefined && baseEnv !== ''
      ? Number(baseEnv) >>> 0
      : Math.floor(Math.random() * 2 ** 31);
  return Array.from({ length: count }, (_, i) => (base + i) >>> 0);
}
