/**
 * Following a shard's Consensus log: one page of entries folded onto the state, as a pure
 * function. The shard does the reading (paging, limits, retries) and applies the steps this
 * returns; what this decides is which entries apply and how:
 *
 * - an entry whose `seqnoFrom` is the state's seqno applies its diff (the fast path); if the
 *   diff fails and the entry carries a rollup, the rollup is used instead;
 * - an entry with a rollup replaces the state (the slow path); when opening, or reloading from
 *   the start, the page is read from its newest rollup on;
 * - entries at or below the state's seqno are skipped;
 * - anything else cannot be followed from here: `reload` (read the log from its start again),
 *   or, when already reading from the start, `failed` with `corrupt_log`.
 * An unreadable entry stops the fold where it is reached, so the versions before it still apply.
 */
import { decodeEnvelope, type Envelope } from './envelope.js';
import { ShardStateError } from './errors.js';
import type { StateModel } from './types.js';

/** Where the fold starts: the state, and whether it was ever loaded. */
export interface LogCursor<S> {
  readonly seqno: bigint;
  readonly state: S;
  readonly loaded: boolean;
}

/** A version to apply: the state at `seqno`, written at `wallTimeMs`. */
export interface LogStep<S> {
  readonly seqno: bigint;
  readonly state: S;
  readonly wallTimeMs: number;
  /** Replaced from a rollup (the slow path) rather than a diff applied. */
  readonly slow: boolean;
}

export type PageEnd =
  /** Every entry was folded (or skipped). */
  | { readonly kind: 'continue' }
  /** An entry does not follow the state and carries no rollup: read again from the start. */
  | { readonly kind: 'reload'; readonly why: string }
  /** The log cannot be followed by this model. */
  | { readonly kind: 'failed'; readonly error: ShardStateError };

export interface PageFold<S> {
  readonly steps: LogStep<S>[];
  readonly end: PageEnd;
}

export interface FoldOptions {
  shardId: string;
  /** Reading from the log's start (a reload): no further reload is possible. */
  fromStart: boolean;
  /** Told when a diff that failed to apply was replaced by its entry's rollup. */
  onDiffFallback?: ((seqno: bigint, err: unknown) => void) | undefined;
}

const CONTINUE: PageEnd = Object.freeze({ kind: 'continue' });

export function foldPage<S, D>(
  model: StateModel<S, D>,
  cursor: LogCursor<S>,
  entries: readonly { seqno: bigint; data: Uint8Array }[],
  options: FoldOptions,
): PageFold<S> {
  const { shardId, fromStart } = options;
  const corrupt = (message: string, cause?: unknown) =>
    new ShardStateError('corrupt_log', message, { shardId, cause });
  let { seqno, state, loaded } = cursor;
  const steps: LogStep<S>[] = [];
  const step = (s: LogStep<S>) => {
    steps.push(s);
    seqno = s.seqno;
    state = s.state;
    loaded = true;
  };
  // Decode every entry first (to find the page's newest rollup).
  const envs: (Envelope | ShardStateError)[] = entries.map((e) => {
    try {
      return decodeEnvelope(e.data, model.name, e.seqno);
    } catch (err) {
      return corrupt(`version ${e.seqno} is unreadable`, err);
    }
  });
  let start = 0;
  if (fromStart || !loaded) {
    // Start at the newest rollup of the page: the versions before it need not be applied.
    for (let i = envs.length - 1; i >= 0; i--) {
      const env = envs[i];
      if (env !== undefined && !(env instanceof ShardStateError) && env.rollup !== undefined) {
        start = i;
        break;
      }
    }
  }
  for (let i = start; i < envs.length; i++) {
    const env = envs[i] as Envelope | ShardStateError;
    if (env instanceof ShardStateError) {
      if (loaded && (entries[i]?.seqno ?? 0n) <= seqno) continue;
      return { steps, end: { kind: 'failed', error: env } };
    }
    if (loaded && env.seqnoTo <= seqno) continue;
    if (loaded && env.seqnoFrom === seqno) {
      let next: S | undefined;
      try {
        next = model.apply(state, model.decodeDiff(env.diff));
      } catch (err) {
        if (env.rollup === undefined) {
          return {
            steps,
            end: { kind: 'failed', error: corrupt(`version ${env.seqnoTo} does not apply`, err) },
          };
        }
        options.onDiffFallback?.(env.seqnoTo, err);
      }
      if (next !== undefined) {
        step({ seqno: env.seqnoTo, state: next, wallTimeMs: env.wallTimeMs, slow: false });
        continue;
      }
    }
    if (env.rollup === undefined) {
      if (fromStart) {
        const message = `version ${env.seqnoTo} neither follows ${seqno} nor carries a rollup`;
        return { steps, end: { kind: 'failed', error: corrupt(message) } };
      }
      return {
        steps,
        end: { kind: 'reload', why: `version ${env.seqnoTo} does not follow ${seqno}` },
      };
    }
    let rolled: S;
    try {
      rolled = model.decodeState(env.rollup);
    } catch (err) {
      return {
        steps,
        end: { kind: 'failed', error: corrupt(`rollup ${env.seqnoTo} does not decode`, err) },
      };
    }
    step({ seqno: env.seqnoTo, state: rolled, wallTimeMs: env.wallTimeMs, slow: true });
  }
  return { steps, end: CONTINUE };
}
