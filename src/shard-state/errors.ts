/**
 * Shard-state errors carry a stable `code`; callers branch on it, never on message text.
 */
export type ShardStateErrorCode =
  /** A bad argument or configuration value (the message names the field). */
  | 'invalid_argument'
  /** The handle or the cache was closed. */
  | 'closed'
  /** The call was aborted through its `AbortSignal`. */
  | 'aborted'
  /** `open` was given a model other than the one the shard is held with. */
  | 'model_mismatch'
  /** The version asked for is not in Consensus (never written, or truncated away). */
  | 'not_found'
  /** A Consensus call failed determinately with an error that retrying cannot fix. */
  | 'consensus'
  /** Consensus holds versions this model cannot read or apply; the state stays at the last good one. */
  | 'corrupt_log';

export class ShardStateError extends Error {
  override readonly name = 'ShardStateError';
  readonly code: ShardStateErrorCode;
  readonly shardId: string | undefined;

  constructor(
    code: ShardStateErrorCode,
    message: string,
    options: { shardId?: string | undefined; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.shardId = options.shardId;
  }
}

/** Throws `aborted` if `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, shardId?: string): void {
  if (signal?.aborted) {
    throw new ShardStateError('aborted', 'the call was aborted', { shardId, cause: signal.reason });
  }
}
