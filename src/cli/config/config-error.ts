/**
 * A command-line configuration problem found at start: a bad flag or environment variable, an
 * unreadable file. `flag` names the flag (e.g. `--tls-cert`); the CLI prints the message and
 * exits with code 2 (usage error), before anything binds a port.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'invalid_config';
  readonly flag: string;

  constructor(flag: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.flag = flag;
  }
}

/** The exit code for a configuration (usage) error. */
export const EXIT_USAGE = 2;
