/**
 * Broker defaults (named constants) and the one-time validation of `BrokerOptions`: every bad
 * field is reported by name with a `BrokerError('invalid_argument')` at construction.
 */
import { type Logger, pino } from 'pino';
import { Registry } from 'prom-client';
import {
  checkSocketPath,
  DEFAULT_KEEPALIVE_TIME_MS,
  DEFAULT_KEEPALIVE_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_MAX_SHARD_ID_BYTES,
  formatUnixTarget,
  MAX_SHARD_ID_BYTES_LIMIT,
} from '../protocol/index.js';
import { type Clock, systemClock } from '../util/index.js';
import { BrokerError } from './errors.js';
import { HTTP2_SERVER_KINDS, type Http2ServerKind } from './server-stream.js';
import { compileTokenGrants, type TokenTable } from './token-scopes.js';
import type {
  BrokerFlags,
  BrokerLimits,
  BrokerOptions,
  BrokerTlsOptions,
  HostPort,
  ListenAddress,
  UnixSocketAddress,
} from './types.js';

export const DEFAULT_LISTEN: HostPort = { host: '127.0.0.1', port: 6879 };
export const DEFAULT_MAX_CONNECTIONS = 10_000;
export const DEFAULT_MAX_TCP_CONNECTIONS = 10_000;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION = 100_000;
export const DEFAULT_MAX_QUEUE_MESSAGES = 1024;
export const DEFAULT_MAX_QUEUE_BYTES = 16 * 1024 * 1024;
export const DEFAULT_STUCK_CONNECTION_TIMEOUT_MS = 30_000;
export const DEFAULT_RESUME_RING_SIZE = 64;
export const DEFAULT_MAX_RESUME_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_CONNECTION_AGE_MS = 0;
export const DEFAULT_MAX_CONNECTION_AGE_GRACE_MS = 10_000;
export const DEFAULT_MAX_CALLER_ID_LABELS = 100;
/** No write window: every event-loop turn's diffs are written at once. */
export const DEFAULT_WRITE_WINDOW_US = 0;
/** The largest write window accepted, in µs (100 ms). */
export const MAX_WRITE_WINDOW_US = 100_000;
/** `close()` without a deadline waits this long before ending streams, in ms. */
export const DEFAULT_DRAIN_DEADLINE_MS = 10_000;

export const DEFAULT_LIMITS: Readonly<BrokerLimits> = Object.freeze({
  maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
  maxConnections: DEFAULT_MAX_CONNECTIONS,
  maxTcpConnections: DEFAULT_MAX_TCP_CONNECTIONS,
  maxSubscriptionsPerConnection: DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
  maxShardIdBytes: DEFAULT_MAX_SHARD_ID_BYTES,
  maxQueueMessages: DEFAULT_MAX_QUEUE_MESSAGES,
  maxQueueBytes: DEFAULT_MAX_QUEUE_BYTES,
  stuckConnectionTimeoutMs: DEFAULT_STUCK_CONNECTION_TIMEOUT_MS,
  resumeRingSize: DEFAULT_RESUME_RING_SIZE,
  maxResumeBytes: DEFAULT_MAX_RESUME_BYTES,
});

/** The HTTP/2 server for plain TCP and Unix sockets (`BrokerOptions.http2Server`). */
export const DEFAULT_HTTP2_SERVER: Http2ServerKind = 'own';

export const DEFAULT_FLAGS: Readonly<BrokerFlags> = Object.freeze({ forwardPushes: true });

export interface ResolvedBrokerOptions {
  listen: ListenAddress;
  tls: BrokerTlsOptions | undefined;
  authToken: string | undefined;
  tokens: TokenTable | undefined;
  limits: BrokerLimits;
  flags: BrokerFlags;
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  maxConnectionAgeMs: number;
  maxConnectionAgeGraceMs: number;
  handshakeTimeoutMs: number;
  http2Server: Http2ServerKind;
  writeWindowUs: number;
  registry: Registry;
  logger: Logger;
  now: () => number;
  clock: Clock;
  maxCallerIdLabels: number;
  reflection: boolean;
}

function bad(field: string, message: string): never {
  throw new BrokerError('invalid_argument', `BrokerOptions.${field} ${message}`);
}

function int(value: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    bad(field, `must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

function pem(value: unknown, field: string): string | Buffer {
  if (typeof value === 'string' ? value.length === 0 : !Buffer.isBuffer(value)) {
    bad(field, 'must be a non-empty PEM string or Buffer');
  }
  return value as string | Buffer;
}

/** True for a Unix socket listen address (`{ path }`), false for TCP (`{ host, port }`). */
export function isUnixSocketAddress(address: ListenAddress): address is UnixSocketAddress {
  return 'path' in address;
}

/** `host:port` (brackets around an IPv6 host) or `unix:PATH`: how logs and the CLI name it. */
export function formatListenAddress(address: ListenAddress): string {
  if (isUnixSocketAddress(address)) return formatUnixTarget(address.path);
  const { host, port } = address;
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function resolveListen(listen: unknown): ListenAddress {
  if (typeof listen !== 'object' || listen === null) {
    bad('listen', 'must be { host, port } or { path }');
  }
  if ('path' in listen) {
    const { path, mode } = listen as Partial<UnixSocketAddress>;
    if (typeof path !== 'string') bad('listen.path', 'must be a string');
    const checked = checkSocketPath(path);
    if (checked.kind !== 'unix') {
      bad(
        'listen.path',
        `is not a socket path: ${checked.kind === 'invalid' ? checked.reason : ''}`,
      );
    }
    if (mode === undefined) return { path };
    return { path, mode: int(mode, 'listen.mode', 0, 0o777) };
  }
  const { host, port } = listen as Partial<HostPort>;
  if (typeof host !== 'string' || host.length === 0) {
    bad('listen.host', 'must be a non-empty string');
  }
  return { host, port: int(port, 'listen.port', 0, 65535) };
}

export function resolveBrokerOptions(options: BrokerOptions = {}): ResolvedBrokerOptions {
  if (typeof options !== 'object' || options === null) bad('', 'must be an object');
  const listen = resolveListen(options.listen ?? DEFAULT_LISTEN);

  let tls: BrokerTlsOptions | undefined;
  if (options.tls !== undefined) {
    if (typeof options.tls !== 'object' || options.tls === null) bad('tls', 'must be an object');
    tls = {
      cert: pem(options.tls.cert, 'tls.cert'),
      key: pem(options.tls.key, 'tls.key'),
      clientCa:
        options.tls.clientCa === undefined ? undefined : pem(options.tls.clientCa, 'tls.clientCa'),
    };
    if (isUnixSocketAddress(listen)) {
      bad(
        'tls',
        'is for a TCP listener: on a Unix socket the file permissions (listen.mode) decide who connects',
      );
    }
  }

  const authToken = options.authToken;
  if (authToken !== undefined) {
    if (typeof authToken !== 'string' || !/^[\x21-\x7e]+$/.test(authToken)) {
      bad('authToken', 'must be a non-empty string of printable ASCII without spaces');
    }
  }

  let tokens: TokenTable | undefined;
  if (options.tokens !== undefined) {
    try {
      tokens = compileTokenGrants(options.tokens);
    } catch (err) {
      bad('tokens', `is invalid: ${(err as Error).message}`);
    }
  }

  const given = options.limits ?? {};
  if (typeof given !== 'object' || given === null) bad('limits', 'must be an object');
  const limits: BrokerLimits = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(given) as (keyof BrokerLimits)[]) {
    if (!(key in DEFAULT_LIMITS)) bad(`limits.${key}`, 'is not a known limit');
    const v = given[key];
    if (v !== undefined) limits[key] = v;
  }
  int(limits.maxMessageBytes, 'limits.maxMessageBytes', 64, 2 ** 31 - 1);
  int(limits.maxConnections, 'limits.maxConnections', 1);
  int(limits.maxTcpConnections, 'limits.maxTcpConnections', 1);
  int(limits.maxSubscriptionsPerConnection, 'limits.maxSubscriptionsPerConnection', 1);
  int(limits.maxShardIdBytes, 'limits.maxShardIdBytes', 1, MAX_SHARD_ID_BYTES_LIMIT);
  int(limits.maxQueueMessages, 'limits.maxQueueMessages', 1);
  int(limits.maxQueueBytes, 'limits.maxQueueBytes', 1);
  int(limits.stuckConnectionTimeoutMs, 'limits.stuckConnectionTimeoutMs', 1);
  int(limits.resumeRingSize, 'limits.resumeRingSize', 0, 1_000_000);
  int(limits.maxResumeBytes, 'limits.maxResumeBytes', 0);

  const flags: BrokerFlags = { ...DEFAULT_FLAGS };
  if (options.flags !== undefined) {
    if (options.flags.forwardPushes !== undefined) {
      if (typeof options.flags.forwardPushes !== 'boolean') {
        bad('flags.forwardPushes', 'must be a boolean');
      }
      flags.forwardPushes = options.flags.forwardPushes;
    }
  }

  const clock = options.clock ?? systemClock;
  if (
    typeof clock !== 'object' ||
    clock === null ||
    typeof clock.nowMs !== 'function' ||
    typeof clock.setTimer !== 'function'
  ) {
    bad('clock', 'must be a Clock');
  }
  const now = options.now ?? (() => clock.nowMs());
  if (typeof now !== 'function') bad('now', 'must be a function');
  const http2Server = options.http2Server ?? DEFAULT_HTTP2_SERVER;
  if (!HTTP2_SERVER_KINDS.includes(http2Server)) {
    bad('http2Server', `must be one of ${HTTP2_SERVER_KINDS.join(', ')}`);
  }
  const reflection = options.reflection ?? true;
  if (typeof reflection !== 'boolean') bad('reflection', 'must be a boolean');

  return {
    listen,
    tls,
    authToken,
    tokens,
    limits,
    flags,
    keepaliveTimeMs: int(
      options.keepaliveTimeMs ?? DEFAULT_KEEPALIVE_TIME_MS,
      'keepaliveTimeMs',
      0,
    ),
    keepaliveTimeoutMs: int(
      options.keepaliveTimeoutMs ?? DEFAULT_KEEPALIVE_TIMEOUT_MS,
      'keepaliveTimeoutMs',
      1,
    ),
    maxConnectionAgeMs: int(
      options.maxConnectionAgeMs ?? DEFAULT_MAX_CONNECTION_AGE_MS,
      'maxConnectionAgeMs',
      0,
    ),
    maxConnectionAgeGraceMs: int(
      options.maxConnectionAgeGraceMs ?? DEFAULT_MAX_CONNECTION_AGE_GRACE_MS,
      'maxConnectionAgeGraceMs',
      0,
    ),
    handshakeTimeoutMs: int(
      options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      'handshakeTimeoutMs',
      1,
    ),
    http2Server,
    writeWindowUs: int(
      options.writeWindowUs ?? DEFAULT_WRITE_WINDOW_US,
      'writeWindowUs',
      0,
      MAX_WRITE_WINDOW_US,
    ),
    registry: options.registry ?? new Registry(),
    logger: options.logger ?? pino({ level: 'silent' }),
    now,
    clock,
    maxCallerIdLabels: int(
      options.maxCallerIdLabels ?? DEFAULT_MAX_CALLER_ID_LABELS,
      'maxCallerIdLabels',
      0,
    ),
    reflection,
  };
}
