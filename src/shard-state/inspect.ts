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
import { foldPage, type LogCursor } from './log-reader.js';
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
  // The fold is the one shard state uses to open a shard (`foldPage`, from the log's start);
  // this adds the cut at `atSeqno` and the tallies of what is retained.
  let cursor: LogCursor<S> = { seqno: 0n, state: model.initial(), loaded: false };
  let wallTimeMs = 0;
  let fromRollupSeqno = 0n;
  let versions = 0;
  let earliestSeqno: bigint | undefined;
  let headSeqno = 0n;
  let lastRollupSeqno: bigint | undefined;

  for (let from = 0n; ; ) {
    const entries = await consensus.scan(shardId, from, pageSize, { signal });
    for (const entry of entries) {
      versions++;
      earliestSeqno ??= entry.seqno;
      headSeqno = entry.seqno;
      let rollup: boolean;
      try {
        rollup = decodeEnvelope(entry.data, model.name, entry.seqno).rollup !== undefined;
      } catch (err) {
        throw new ShardStateError(
          'corrupt_log',
          `version ${entry.seqno} is unreadable: ${(err as Error).message}`,
          { shardId, cause: err },
        );
      }
      if (rollup) lastRollupSeqno = entry.seqno;
    }
    const wanted = atSeqno === undefined ? entries : entries.filter((e) => e.seqno <= atSeqno);
    const fold = foldPage(model, cursor, wanted, { shardId, fromStart: true });
    for (const step of fold.steps) {
      cursor = { seqno: step.seqno, state: step.state, loaded: true };
      wallTimeMs = step.wallTimeMs;
      if (step.slow) fromRollupSeqno = step.seqno;
    }
    // From the start there is no reload: a version that does not follow is `failed`.
    if (fold.end.kind === 'failed') throw fold.end.error;
    const last = entries.at(-1);
    if (last === undefined || entries.length < pageSize) break;
    from = last.seqno + 1n;
  }
  const stateSeqno = cursor.loaded ? cursor.seqno : undefined;
  const state = cursor.state;

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
