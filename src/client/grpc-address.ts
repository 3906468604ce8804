/**
 * Parses a broker address: `grpc://host:port` (plaintext), `grpcs://host:port` (TLS), or a Unix
 * socket in gRPC's syntax (`unix:/abs/path`, `unix:///abs/path`, `unix:relative/path`; a broker
 * on the same host, `--listen unix:…`). IPv6 hosts go in brackets (`grpc://[::1]:6879`). The
 * port is required; there is no path. No TLS over a Unix socket (the broker refuses it too).
 */
import {
  formatUnixTarget,
  isUnixTarget,
  parseUnixTarget,
  UNIX_SOCKET_AUTHORITY,
} from '../protocol/index.js';
import { ClientError } from './errors.js';

export type GrpcAddress =
  | {
      kind: 'tcp';
      tls: boolean;
      host: string;
      port: number;
      /** `host:port`, brackets kept for IPv6 (the HTTP/2 authority). */
      target: string;
    }
  | {
      kind: 'unix';
      tls: false;
      /** The socket file. */
      path: string;
      /** The HTTP/2 authority: `localhost`, as grpc-js and gRPC core send for a Unix socket. */
      target: string;
    };

/** How logs and errors name the broker: `host:port` or `unix:PATH`. */
export function describeGrpcAddress(address: GrpcAddress): string {
  return address.kind === 'unix' ? formatUnixTarget(address.path) : address.target;
}

const bad = (message: string): ClientError =>
  new ClientError('invalid_argument', `pubsub: ${message}`, { field: 'pubsub' });

export function parseGrpcAddress(url: string): GrpcAddress {
  if (isUnixTarget(url)) {
    const unix = parseUnixTarget(url);
    if (unix.kind !== 'unix') {
      throw bad(
        `${JSON.stringify(url)} is not a Unix socket target: ${unix.kind === 'invalid' ? unix.reason : ''}`,
      );
    }
    return { kind: 'unix', tls: false, path: unix.path, target: UNIX_SOCKET_AUTHORITY };
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new ClientError('invalid_argument', `pubsub: not a URL: ${JSON.stringify(url)}`, {
      field: 'pubsub',
      cause,
    });
  }
  if (parsed.protocol !== 'grpc:' && parsed.protocol !== 'grpcs:') {
    throw bad(`scheme must be grpc://, grpcs:// or unix:, got ${JSON.stringify(url)}`);
  }
  const port = Number(parsed.port);
  if (parsed.hostname === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw bad(`${JSON.stringify(url)} needs a host and a port (grpc://host:port)`);
  }
  if ((parsed.pathname !== '' && parsed.pathname !== '/') || parsed.search !== '') {
    throw bad(`${JSON.stringify(url)} must have no path or query`);
  }
  return {
    kind: 'tcp',
    tls: parsed.protocol === 'grpcs:',
    host: parsed.hostname,
    port,
    target: `${parsed.hostname}:${port}`,
  };
}
