/**
 * Errors of the admin and metrics HTTP servers. Callers branch on `code`, never on the text.
 */
export type AdminErrorCode =
  /** An option is invalid; the message names the field. */
  | 'invalid_argument'
  /** The port could not be bound (in use, no permission, bad address). */
  | 'listen_failed'
  /** `start()` was called twice, or after `close()`/`destroy()`. */
  | 'bad_state'
  /** `start()` was aborted through its `AbortSignal`. */
  | 'aborted';

export class AdminError extends Error {
  override readonly name = 'AdminError';
  readonly code: AdminErrorCode;

  constructor(code: AdminErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}
