/**
 * A failure of an inspection command that is not a usage error: the admin endpoint or the
 * Consensus store cannot be reached or answers something unexpected, a shard has no such
 * version. `code` is stable (tests and scripts match on it, never on the message); the CLI
 * prints the message and exits 1.
 */
export type CliErrorCode =
  | 'unreachable'
  | 'http_error'
  | 'bad_response'
  | 'not_found'
  | 'corrupt_log'
  | 'invalid_argument';

export class CliError extends Error {
  override readonly name = 'CliError';
  readonly code: CliErrorCode;

  constructor(code: CliErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
