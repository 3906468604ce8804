import { ShardStateError } from './errors.js';

/**
 * Runtime-settable configuration of a shard-state cache (`ShardStateCache.setConfig`). The
 * schedules follow the reference (Materialize persist): a listener first sleeps 1200 ms, then
 * 100 ms doubling to 16 s, with ×[0.9, 1.1] jitter; a writer that loses a compare-and-set
 * retries after 4 ms doubling to 16 s.
 */
export interface ShardStateConfig {
  /** How long a diff that arrived ahead of the next seqno is held for the missing ones before they are fetched. 0 fetches at once. @default 5 */
  reorderWindowMs: number;
  /** Diffs held per shard at most; beyond it the gap is fetched at once. @default 1024 */
  maxHeldDiffs: number;
  /** A waiting reader's first poll sleep. @default 1200 */
  pollFirstSleepMs: number;
  /** The second poll sleep, doubled after each poll that finds nothing. @default 100 */
  pollInitialBackoffMs: number;
  /** The longest poll sleep. @default 16000 */
  pollMaxBackoffMs: number;
  /** Each sleep is multiplied by a uniform factor in `[1 - r, 1 + r]`. @default 0.1 */
  pollJitterRatio: number;
  /** A writer's first retry sleep after a lost compare-and-set. @default 4 */
  writerInitialBackoffMs: number;
  /** A writer's longest retry sleep. @default 16000 */
  writerMaxBackoffMs: number;
  /** Every this many versions an envelope carries a full-state rollup. @default 32 */
  rollupInterval: number;
  /** After writing a rollup, delete the versions behind the previous rollup (best effort). @default true */
  truncate: boolean;
  /** How many versions one Consensus scan reads at most. @default 256 */
  fetchBatchSize: number;
}

export const DEFAULT_REORDER_WINDOW_MS = 5;
export const DEFAULT_MAX_HELD_DIFFS = 1024;
export const DEFAULT_POLL_FIRST_SLEEP_MS = 1200;
export const DEFAULT_POLL_INITIAL_BACKOFF_MS = 100;
export const DEFAULT_POLL_MAX_BACKOFF_MS = 16_000;
export const DEFAULT_POLL_JITTER_RATIO = 0.1;
export const DEFAULT_WRITER_INITIAL_BACKOFF_MS = 4;
export const DEFAULT_WRITER_MAX_BACKOFF_MS = 16_000;
export const DEFAULT_ROLLUP_INTERVAL = 32;
export const DEFAULT_FETCH_BATCH_SIZE = 256;

export const DEFAULT_SHARD_STATE_CONFIG: Readonly<ShardStateConfig> = Object.freeze({
  reorderWindowMs: DEFAULT_REORDER_WINDOW_MS,
  maxHeldDiffs: DEFAULT_MAX_HELD_DIFFS,
  pollFirstSleepMs: DEFAULT_POLL_FIRST_SLEEP_MS,
  pollInitialBackoffMs: DEFAULT_POLL_INITIAL_BACKOFF_MS,
  pollMaxBackoffMs: DEFAULT_POLL_MAX_BACKOFF_MS,
  pollJitterRatio: DEFAULT_POLL_JITTER_RATIO,
  writerInitialBackoffMs: DEFAULT_WRITER_INITIAL_BACKOFF_MS,
  writerMaxBackoffMs: DEFAULT_WRITER_MAX_BACKOFF_MS,
  rollupInterval: DEFAULT_ROLLUP_INTERVAL,
  truncate: true,
  fetchBatchSize: DEFAULT_FETCH_BATCH_SIZE,
});

/** The largest millisecond value accepted (about 24.8 days: the limit of Node timers). */
const MAX_MS = 2_147_483_647;

type Check = (v: unknown) => string | undefined;
const ms: Check = (v) =>
  typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= MAX_MS
    ? undefined
    : `must be a finite number of milliseconds in [0, ${MAX_MS}]`;
const positiveMs: Check = (v) =>
  ms(v) ?? ((v as number) > 0 ? undefined : 'must be greater than 0');
const int =
  (min: number, max: number): Check =>
  (v) =>
    typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max
      ? undefined
      : `must be an integer in [${min}, ${max}]`;

const CHECKS: { [K in keyof ShardStateConfig]: Check } = {
  reorderWindowMs: ms,
  maxHeldDiffs: int(1, 1_000_000),
  pollFirstSleepMs: positiveMs,
  pollInitialBackoffMs: positiveMs,
  pollMaxBackoffMs: positiveMs,
  pollJitterRatio: (v) =>
    typeof v === 'number' && v >= 0 && v < 1 ? undefined : 'must be a number in [0, 1)',
  writerInitialBackoffMs: positiveMs,
  writerMaxBackoffMs: positiveMs,
  rollupInterval: int(1, 1_000_000),
  truncate: (v) => (typeof v === 'boolean' ? undefined : 'must be a boolean'),
  fetchBatchSize: int(1, 100_000),
};

/**
 * `base` with `partial` applied, validated as a whole. Throws `invalid_argument` naming the
 * first bad field (unknown fields included); `base` is never modified.
 */
export function mergeConfig(
  base: Readonly<ShardStateConfig>,
  partial: Partial<ShardStateConfig> | undefined,
): Readonly<ShardStateConfig> {
  if (partial !== undefined && (typeof partial !== 'object' || partial === null)) {
    throw new ShardStateError('invalid_argument', 'config must be an object');
  }
  const next: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(partial ?? {})) {
    if (value === undefined) continue;
    const check = CHECKS[key as keyof ShardStateConfig];
    if (check === undefined) {
      throw new ShardStateError('invalid_argument', `config.${key} is not a known field`);
    }
    const problem = check(value);
    if (problem !== undefined) {
      throw new ShardStateError('invalid_argument', `config.${key} ${problem}`);
    }
    next[key] = value;
  }
  const cfg = next as unknown as ShardStateConfig;
  if (cfg.pollInitialBackoffMs > cfg.pollMaxBackoffMs) {
    throw new ShardStateError(
      'invalid_argument',
      'config.pollInitialBackoffMs must not exceed config.pollMaxBackoffMs',
    );
  }
  if (cfg.writerInitialBackoffMs > cfg.writerMaxBackoffMs) {
    throw new ShardStateError(
      'invalid_argument',
      'config.writerInitialBackoffMs must not exceed config.writerMaxBackoffMs',
    );
  }
  return Object.freeze(cfg);
}

/**
 * The poll sleep before poll number `attempt` (0-based) of a waiting reader, before jitter:
 * the first sleep, then the initial backoff doubling up to the cap.
 */
export function pollDelayMs(cfg: Readonly<ShardStateConfig>, attempt: number): number {
  if (attempt <= 0) return cfg.pollFirstSleepMs;
  return doubling(cfg.pollInitialBackoffMs, cfg.pollMaxBackoffMs, attempt - 1);
}

/** The writer's sleep after its `retry`-th lost compare-and-set (0-based). */
export function writerDelayMs(cfg: Readonly<ShardStateConfig>, retry: number): number {
  return doubling(cfg.writerInitialBackoffMs, cfg.writerMaxBackoffMs, retry);
}

/** `delayMs` times a uniform factor in `[1 - ratio, 1 + ratio]`; `random` is uniform in [0, 1). */
export function jitter(delayMs: number, ratio: number, random: () => number): number {
  return jitterWith(delayMs, ratio, random());
}

/** `jitter` with its draw `unit` (in [0, 1)) made already. */
export function jitterWith(delayMs: number, ratio: number, unit: number): number {
  return delayMs * (1 - ratio + 2 * ratio * unit);
}

function doubling(initial: number, cap: number, step: number): number {
  // 2^31 already exceeds any cap; avoid Infinity for large steps.
  return Math.min(cap, initial * 2 ** Math.min(step, 31));
}
