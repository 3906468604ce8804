/**
 * Parses a broker address: `grpc://host:port` (plaintext) or `grpcs://host:port` (TLS).
 * IPv6 hosts go in brackets (`grpc://[::1]:6879`). The port is required; there is no path.
 */
import { ClientError } from './errors.js';

export interface GrpcAddress {
  tls: boolean;
  host: string;
  port: number;
  /** `host:port`, brackets kept for IPv6 (the HTTP/2 authority). */
  target: string;
}

export function parseGrpcAddress(url: string): GrpcAddress {
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
    throw new ClientError(
      'invalid_argument',
      `pubsub: scheme must be grpc:// or grpcs://, got ${JSON.stringify(url)}`,
      { field: 'pubsub' },
    );
  }
  const port = Number(parsed.port);
  if (parsed.hostname === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ClientError(
      'invalid_argument',
      `pubsub: ${JSON.stringify(url)} needs a host and a port (grpc://host:port)`,
      { field: 'pubsub' },
    );
  }
  if ((parsed.pathname !== '' && parsed.pathname !== '/') || parsed.search !== '') {
    throw new ClientError(
      'invalid_argument',
      `pubsub: ${JSON.stringify(url)} must have no path or query`,
      {
        field: 'pubsub',
      },
    );
  }
  return {
    tls: parsed.protocol === 'grpcs:',
    host: parsed.hostname,
    port,
    target: `${parsed.hostname}:${port}`,
  };
}
