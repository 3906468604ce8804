/**
 * Consensus errors carry a stable `code` and say whether the operation certainly did not apply
 * (`determinate`) or may have applied (`indeterminate`: a compare-and-set must re-read the head
 * before deciding what happened). Callers branch on `code` and `determinate`, never on text.
 */
export type ConsensusErrorCode =
  /** The caller passed a bad key, seqno, limit, page token or oversized data. Determinate. */
  | 'invalid_argument'
  /** The request is valid but the key's state forbids it (truncate above head). Determinate. */
  | 'failed_precondition'
  /** The backend refused or could not be reached before anything was sent. Determinate. */
  | 'unavailable'
  /** The outcome is unknown: the connection was lost mid-request, or a timeout. Indeterminate. */
  | 'indeterminate'
  /** The call was aborted through its `AbortSignal` before it was sent. Determinate. */
  | 'aborted'
  /** The Consensus was closed. Determinate. */
  | 'closed'
  /** The backend returned data this code cannot read (a corrupt row). Determinate. */
  | 'data_loss';

export class ConsensusError extends Error {
  override readonly name = 'ConsensusError';
  readonly code: ConsensusErrorCode;
  /** True when the operation certainly did not apply. */
  readonly determinate: boolean;
  /** The key the call was about, if any. */
  readonly key: string | undefined;

  constructor(
    code: ConsensusErrorCode,
    message: string,
    options: { key?: string | undefined; cause?: unknown; determinate?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.determinate = options.determinate ?? code !== 'indeterminate';
    this.key = options.key;
  }
}

/** True if `err` is a Consensus error whose operation may have applied. */
export function isIndeterminate(err: unknown): boolean {
  return err instanceof ConsensusError && !err.determinate;
}
