/**
 * Reading one shard's state at a seqno straight from its Consensus log, without a cache or a
 * subscription: what `persist-pubsub inspect` prints. It folds the retained versions the way
 * opening a shard does (start at a rollup, apply each following diff), streaming the log one
 * page at a time, and reports what is retained: how many versions, the earliest and the head,
 * and where the newest rollup is. Read-only; it writes and truncates nothing.
 */
import type { Consensus } from '../consensus/index.js';
import { decodeEnvelope } from './envelope.js';
import { ShardStateError } from './errors.js';
import type { StateModel } from './types.js';

/** Entries read per Consensus scan. */
export const INSPECT_PAGE_SIZE = 1000;

export interface InspectShardOptions {
  /** The version to rebuild; it must still be retained. @default the head */
  atSeqno?: bigint | undefined;
  signal?: AbortSignal | undefined;
  /** @default INSPECT_PAGE_SIZE */
  pageSize?: number | undefined;
}

export interface ShardInspection<S> {
  shardId: string;
  model: string;
  /** The seqno of `state`: `atSeqno`, or the head. */
  seqno: bigint;
  state: S;
  /** When version `seqno` was committed, ms since the Unix epoch. */
  wallTimeMs: number;
  /** The rollup `state` was rebuilt from (then every diff after it up to `seqno` applied). */
  fromRollupSeqno: bigint;
  retained: {
    versions: number;
    earliestSeqno: bigint;
    headSeqno: bigint;
    /** The newest version carrying a full-state rollup. */
    lastRollupSeqno: bigint | undefined;
  };
}

/**
 * Rebuilds `shardId`'s state at `atSeqno` (or its head). Throws `ShardStateError`: `not_found`
 * if the shard has no versions or `atSeqno` is not retained, `corrupt_log` if a version cannot
 * be read by `model` or does not apply.
 */
export async function inspectShard<S, D>(
  consensus: Consensus,
  shardId: string,
  model: StateModel<S, D>,
  options: InspectShardOptions = {},
): Promise<ShardInspection<S>> {
  const { atSeqno, signal } = options;
  const pageSize = options.pageSize ?? INSPECT_PAGE_SIZE;
  let state: S | undefined;
  let stateSeqno: bigint | undefined;
  let wallTimeMs = 0;
  let fromRollupSeqno = 0n;
  let versions = 0;
  let earliestSeqno: bigint | undefined;
  let headSeqno = 0n;
  let lastRollupSeqno: bigint | undefined;
  const corrupt = (message: string, cause?: unknown) =>
    new ShardStateError('corrupt_log', message, { shardId, cause });

  for (let from = 0n; ; ) {
    const entries = await consensus.scan(shardId, from, pageSize, { signal });
    for (const entry of entries) {
      versions++;
      earliestSeqno ??= entry.seqno;
      headSeqno = entry.seqno;
      let env: ReturnType<typeof decodeEnvelope>;
      try {
        env = decodeEnvelope(entry.data, model.name, entry.seqno);
      } catch (err) {
        throw corrupt(`version ${entry.seqno} is unreadable: ${(err as Error).message}`, err);
      }
      if (env.rollup !== undefined) lastRollupSeqno = entry.seqno;
      if (atSeqno !== undefined && entry.seqno > atSeqno) continue;
      if (env.rollup !== undefined) {
        try {
          state = model.decodeState(env.rollup);
        } catch (err) {
          throw corrupt(`the rollup at ${entry.seqno} does not decode`, err);
        }
        fromRollupSeqno = entry.seqno;
      } else if (stateSeqno !== undefined && env.seqnoFrom === stateSeqno) {
        try {
          state = model.apply(state as S, model.decodeDiff(env.diff));
        } catch (err) {
          throw corrupt(`version ${entry.seqno} does not apply`, err);
        }
      } else {
        throw corrupt(
          `version ${entry.seqno} neither follows ${stateSeqno ?? 'a rollup'} nor carries a rollup`,
        );
      }
      stateSeqno = entry.seqno;
      wallTimeMs = env.wallTimeMs;
    }
    const last = entries.at(-1);
    if (last === undefined || entries.length < pageSize) break;
    from = last.seqno + 1n;
  }

  if (earliestSeqno === undefined) {
    throw new ShardStateError('not_found', `shard ${shardId} has no versions in Consensus`, {
      shardId,
    });
  }
  if (stateSeqno === undefined || (atSeqno !== undefined && stateSeqno !== atSeqno)) {
    throw new ShardStateError(
      'not_found',
      `seqno ${atSeqno} of ${shardId} is not retained (retained: ${earliestSeqno}..${headSeqno})`,
      { shardId },
    );
  }
  return {
    shardId,
    model: model.name,
    seqno: stateSeqno,
    state: state as S,
    wallTimeMs,
    fromRollupSeqno,
    retained: { versions, earliestSeqno, headSeqno, lastRollupSeqno },
  };
}

/**
 * Decodes a diff as pubsub carries it (a version envelope without its rollup, see
 * `envelope.ts`) into the model's diff, for display. Throws `corrupt_log` if the bytes are not
 * an envelope of `model` for `seqno`.
 */
export function decodePushedDiff<S, D>(
  model: StateModel<S, D>,
  bytes: Uint8Array,
  seqno: bigint,
): { diff: D; wallTimeMs: number } {
  try {
    const env = decodeEnvelope(bytes, model.name, seqno);
    return { diff: model.decodeDiff(env.diff), wallTimeMs: env.wallTimeMs };
  } catch (err) {
    throw new ShardStateError('corrupt_log', `diff ${seqno}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
