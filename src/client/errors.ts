/**
 * Client errors carry a stable `code`; callers branch on it, never on the message text.
 */
export type ClientErrorCode =
  /** An option, flag value, URL or argument is invalid. The message names the field. */
  | 'invalid_argument'
  /** The client (or the pubsub connection) was closed. */
  | 'closed'
  /** A connection attempt did not complete within the connect attempt timeout. */
  | 'connect_timeout'
  /** The transport failed: the broker is unreachable, refused or ended the stream. */
  | 'unavailable'
  /** The call was aborted through its `AbortSignal`. */
  | 'aborted'
  /** The broker refused one shard (extension refusal notice); that shard polls. */
  | 'refused';

export class ClientError extends Error {
  override readonly name = 'ClientError';
  readonly code: ClientErrorCode;
  /** The option or flag at fault, for `invalid_argument`. */
  readonly field: string | undefined;

  constructor(
    code: ClientErrorCode,
    message: string,
    options: { field?: string | undefined; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.field = options.field;
  }
}
