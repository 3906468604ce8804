/**
 * gRPC's Unix domain socket targets (gRPC "Name Resolution", doc/naming.md), one syntax for the
 * broker's `--listen` and a client's broker address: `unix:path` (relative to the working
 * directory, or absolute as in `unix:/run/pubsub.sock`) and `unix:///absolute/path`. A
 * `unix://authority/...` form is refused (gRPC defines no authority for it), as are the abstract
 * namespace (`unix-abstract:`) and a path that a socket address cannot hold.
 */

/** The HTTP/2 `:authority` a client sends over a Unix socket: grpc-js's and gRPC core's. */
export const UNIX_SOCKET_AUTHORITY = 'localhost';

/**
 * Longest socket path, in bytes: `sockaddr_un.sun_path` holds 108 bytes on Linux (104 on macOS
 * and the BSDs), the terminating NUL included.
 */
export const MAX_UNIX_SOCKET_PATH_BYTES = process.platform === 'linux' ? 107 : 103;

export type UnixTargetResult =
  /** Not a `unix:` target at all (another scheme, or none). */
  { kind: 'none' } | { kind: 'unix'; path: string } | { kind: 'invalid'; reason: string };

/** True when `target` starts with the `unix:` scheme (any case), valid or not. */
export function isUnixTarget(target: string): boolean {
  return /^unix:/i.test(target);
}

/** Parses a `unix:` target into the socket path, or says why it is not one. */
export function parseUnixTarget(target: string): UnixTargetResult {
  if (!isUnixTarget(target)) return { kind: 'none' };
  const rest = target.slice('unix:'.length);
  let path: string;
  if (rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    if (slash !== 2) {
      return {
        kind: 'invalid',
        reason: 'unix:// takes an absolute path and no authority (unix:///run/x.sock)',
      };
    }
    path = rest.slice(2);
  } else {
    path = rest;
  }
  return checkSocketPath(path);
}

/** Checks a socket path (as `BrokerOptions.listen.path` takes it). */
export function checkSocketPath(path: string): UnixTargetResult {
  if (path.length === 0) return { kind: 'invalid', reason: 'the socket path is empty' };
  if (path.includes('\0')) return { kind: 'invalid', reason: 'the socket path contains NUL' };
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_UNIX_SOCKET_PATH_BYTES) {
    return {
      kind: 'invalid',
      reason: `the socket path is ${bytes} bytes, longer than a socket address holds (${MAX_UNIX_SOCKET_PATH_BYTES})`,
    };
  }
  return { kind: 'unix', path };
}

/** The target of a socket path in gRPC's syntax: `unix:/abs/path` or `unix:relative`. */
export function formatUnixTarget(path: string): string {
  return `unix:${path}`;
}
