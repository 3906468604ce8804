/**
 * Value parsers for command-line flags and environment variables. Each throws commander's
 * `InvalidArgumentError`, so commander's message names the flag (or the environment variable)
 * and the bad value; the broker command maps it to exit code 2.
 */
import { InvalidArgumentError } from 'commander';
import type { HostPort, ListenAddress } from '../../broker/index.js';
import { isUnixTarget, parseUnixTarget } from '../../protocol/index.js';

/** Parses `HOST:PORT` or `[IPV6]:PORT`; port 0 picks a free port. */
export function parseHostPort(value: string): HostPort {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):([0-9]{1,5})$/.exec(value);
  if (m === null) {
    throw new InvalidArgumentError('expected HOST:PORT, e.g. 127.0.0.1:6879 or [::1]:6879');
  }
  const host = (m[1] ?? m[2]) as string;
  const port = Number(m[3]);
  if (port > 65535) throw new InvalidArgumentError(`port ${port} is above 65535`);
  return { host, port };
}

/**
 * Parses a gRPC listen address: `HOST:PORT`, `[IPV6]:PORT`, or a Unix socket in gRPC's syntax
 * (`unix:/abs/path`, `unix:///abs/path`, `unix:relative/path`).
 */
export function parseListenAddress(value: string): ListenAddress {
  if (!isUnixTarget(value)) return parseHostPort(value);
  const unix = parseUnixTarget(value);
  if (unix.kind !== 'unix') {
    throw new InvalidArgumentError(
      `expected unix:/path/to.sock or unix:///path/to.sock: ${unix.kind === 'invalid' ? unix.reason : ''}`,
    );
  }
  return { path: unix.path };
}

/** Parses file permission bits in octal (`660`, `0660`, `0o660`), at most 0777. */
export function parseFileMode(value: string): number {
  const m = /^(?:0o?)?([0-7]{1,4})$/i.exec(value);
  const mode = m === null ? Number.NaN : Number.parseInt(m[1] as string, 8);
  if (!(mode >= 0 && mode <= 0o777)) {
    throw new InvalidArgumentError('expected octal permission bits, e.g. 0660');
  }
  return mode;
}

/** A parser for a decimal integer in `[min, max]` (no sign, exponent, fraction or spaces). */
export function integerIn(min: number, max: number): (value: string) => number {
  return (value: string) => {
    if (!/^[0-9]{1,16}$/.test(value)) {
      throw new InvalidArgumentError(`expected an integer in [${min}, ${max}]`);
    }
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer in [${min}, ${max}]`);
    }
    return n;
  };
}

/** `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`; any case). */
export function parseBoolean(value: string): boolean {
  const v = value.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off'].includes(v)) return false;
  throw new InvalidArgumentError('expected true or false');
}

/** A parser accepting one of `choices` exactly. */
export function oneOf<T extends string>(choices: readonly T[]): (value: string) => T {
  return (value: string) => {
    if (!(choices as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`expected one of ${choices.join(', ')}`);
    }
    return value as T;
  };
}

/** A non-empty path. */
export function parsePath(value: string): string {
  if (value.length === 0) throw new InvalidArgumentError('expected a file path');
  return value;
}
