/**
 * Typed errors of the broker's programmatic surface (construction, same-process connections).
 * Stable `code`s; callers match on the code, never on the message.
 */
export type BrokerErrorCode =
  /** An option or argument is invalid; the message names the field. */
  | 'invalid_argument'
  /** A limit was exceeded (subscriptions per connection, connections, message size). */
  | 'resource_exhausted'
  /** The broker is not serving (not started, draining or closed), or the connection is closed. */
  | 'unavailable';

export class BrokerError extends Error {
  override readonly name = 'BrokerError';
  constructor(
    readonly code: BrokerErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
