/**
 * The `persist-pubsub broker` flags: one per `BrokerOptions` field, each with an environment
 * variable and a documented default (commander prints both in `--help`). Precedence: flag, then
 * environment variable, then default. Values are parsed as they are read (a bad one names its
 * flag or variable); cross-field checks and file reads happen once in `resolveBrokerConfig`.
 *
 * The defaults are the broker's own exported constants; the CLI passes every value explicitly,
 * so what `--help` says is what the process runs with.
 */
import { readFile } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import type { LevelWithSilent } from 'pino';
import {
  type BrokerFlags,
  type BrokerOptions,
  DEFAULT_ADMIN_LISTEN,
  DEFAULT_DRAIN_DEADLINE_MS,
  DEFAULT_FLAGS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_HTTP2_SERVER,
  DEFAULT_LIMITS,
  DEFAULT_LISTEN,
  DEFAULT_MAX_CONNECTION_AGE_GRACE_MS,
  DEFAULT_MAX_CONNECTION_AGE_MS,
  DEFAULT_WRITE_WINDOW_US,
  type HostPort,
  HTTP2_SERVER_KINDS,
  type Http2ServerKind,
  isUnixSocketAddress,
  type ListenAddress,
  MAX_WRITE_WINDOW_US,
} from '../../broker/index.js';
import {
  DEFAULT_KEEPALIVE_TIME_MS,
  DEFAULT_KEEPALIVE_TIMEOUT_MS,
  MAX_SHARD_ID_BYTES_LIMIT,
} from '../../protocol/index.js';
import { ConfigError } from './config-error.js';
import { parseBrokerFlagsFile } from './flags-file.js';
import {
  integerIn,
  oneOf,
  parseBoolean,
  parseFileMode,
  parseHostPort,
  parseListenAddress,
  parsePath,
} from './parse-values.js';
import { parseTokensFile } from './tokens-file.js';

/** Longest timer Node.js honours, in ms (~24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The CLI's defaults: the broker's own, plus the admin port and the process's settings. */
export const BROKER_CLI_DEFAULTS = {
  listen: DEFAULT_LISTEN,
  adminListen: DEFAULT_ADMIN_LISTEN,
  limits: DEFAULT_LIMITS,
  keepaliveTimeMs: DEFAULT_KEEPALIVE_TIME_MS,
  keepaliveTimeoutMs: DEFAULT_KEEPALIVE_TIMEOUT_MS,
  maxConnectionAgeMs: DEFAULT_MAX_CONNECTION_AGE_MS,
  maxConnectionAgeGraceMs: DEFAULT_MAX_CONNECTION_AGE_GRACE_MS,
  handshakeTimeoutMs: DEFAULT_HANDSHAKE_TIMEOUT_MS,
  http2Server: DEFAULT_HTTP2_SERVER,
  writeWindowUs: DEFAULT_WRITE_WINDOW_US,
  /** As the broker's `DEFAULT_MAX_CALLER_ID_LABELS` (not exported by the broker). */
  maxCallerIdLabels: 100,
  drainDeadlineMs: DEFAULT_DRAIN_DEADLINE_MS,
  forwardPushes: DEFAULT_FLAGS.forwardPushes,
  reflection: true,
  logLevel: 'info' as LevelWithSilent,
  logFormat: 'auto' as LogFormat,
} as const;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** The environment variable holding the bearer token itself (the flag names a file). */
export const AUTH_TOKEN_ENV = 'PERSIST_PUBSUB_AUTH_TOKEN';

/** What commander hands the action, already parsed per option. */
export interface RawBrokerOptions {
  listen: ListenAddress;
  socketMode?: number;
  adminListen: HostPort;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  authTokenFile?: string;
  authTokensFile?: string;
  maxMessageBytes: number;
  maxConnections: number;
  maxTcpConnections: number;
  maxSubscriptionsPerConnection: number;
  maxShardIdBytes: number;
  maxQueueMessages: number;
  maxQueueBytes: number;
  stuckConnectionTimeoutMs: number;
  resumeRingSize: number;
  maxResumeBytes: number;
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  maxConnectionAgeMs: number;
  maxConnectionAgeGraceMs: number;
  handshakeTimeoutMs: number;
  http2Server: Http2ServerKind;
  writeWindowUs: number;
  maxCallerIdLabels: number;
  drainDeadlineMs: number;
  forwardPushes: boolean;
  reflection: boolean;
  flagsFile?: string;
  logLevel: LevelWithSilent;
  logFormat: LogFormat;
}

/** Everything the broker command needs, validated and with files read. */
export interface BrokerCliConfig {
  /** For `createBroker`; the command adds `logger` and `registry`. */
  broker: BrokerOptions;
  adminListen: HostPort;
  drainDeadlineMs: number;
  logLevel: LevelWithSilent;
  logFormat: LogFormat;
  /** The command-line flags, under any flags file. */
  baseFlags: BrokerFlags;
  /** The flags file as read at start, if one is set. */
  flagsFile?: { path: string; text: string } | undefined;
  /** The scoped tokens file as read at start, if one is set. */
  tokensFile?: { path: string; text: string } | undefined;
}

const fmt = (hp: HostPort) => `${hp.host}:${hp.port}`;

function opt<T>(
  flags: string,
  env: string,
  description: string,
  parse: (value: string) => T,
  defaultValue?: T,
  defaultText?: string,
): Option {
  const o = new Option(flags, description).env(env).argParser(parse);
  if (defaultValue !== undefined) o.default(defaultValue, defaultText ?? String(defaultValue));
  return o;
}

/** Adds every broker flag to `command`. */
export function addBrokerOptions(command: Command): Command {
  const d = BROKER_CLI_DEFAULTS;
  const L = d.limits;
  const count = integerIn(1, Number.MAX_SAFE_INTEGER);
  const ms = integerIn(0, MAX_TIMER_MS);
  const positiveMs = integerIn(1, MAX_TIMER_MS);
  const options = [
    opt(
      '--listen <address>',
      'PERSIST_PUBSUB_LISTEN',
      'gRPC listen address: HOST:PORT (port 0 picks a free port) or a Unix socket, unix:/path/to.sock (or unix:///path, unix:relative): for clients on this host, no TCP/IP stack; a stale socket file is replaced, a live one is an error; no TLS on a socket',
      parseListenAddress,
      d.listen,
      fmt(d.listen),
    ),
    opt(
      '--socket-mode <octal>',
      'PERSIST_PUBSUB_SOCKET_MODE',
      "with --listen unix:…: the socket file's permission bits, e.g. 0660 (owner and group may connect); default: as the umask leaves them",
      parseFileMode,
    ),
    opt(
      '--admin-listen <host:port>',
      'PERSIST_PUBSUB_ADMIN_LISTEN',
      'admin HTTP address (/metrics, /healthz, /readyz, /v1/shards, /v1/connections); unauthenticated, keep it on loopback',
      parseHostPort,
      d.adminListen,
      fmt(d.adminListen),
    ),
    opt(
      '--tls-cert <path>',
      'PERSIST_PUBSUB_TLS_CERT',
      'PEM certificate chain for the gRPC port; enables TLS (needs --tls-key)',
      parsePath,
    ),
    opt('--tls-key <path>', 'PERSIST_PUBSUB_TLS_KEY', 'PEM private key for --tls-cert', parsePath),
    opt(
      '--tls-client-ca <path>',
      'PERSIST_PUBSUB_TLS_CLIENT_CA',
      'PEM CA bundle; clients must present a certificate it signed (mTLS; needs --tls-cert)',
      parsePath,
    ),
    opt(
      '--auth-token-file <path>',
      'PERSIST_PUBSUB_AUTH_TOKEN_FILE',
      `file holding the bearer token clients must send as "authorization: Bearer <token>" (or put the token itself in ${AUTH_TOKEN_ENV}); default: no token`,
      parsePath,
    ),
    opt(
      '--auth-tokens-file <path>',
      'PERSIST_PUBSUB_AUTH_TOKENS_FILE',
      'JSON scoped tokens {"tokens": [{"name", "token", "publish": [patterns], "subscribe": [patterns]}]}: each token\'s name is its caller id, its patterns (an exact shard id, or a prefix and *) the shards it may push and subscribe to; reloaded when it changes and on SIGHUP (an invalid file is logged and ignored); README "Operating: auth"',
      parsePath,
    ),
    opt(
      '--max-message-bytes <n>',
      'PERSIST_PUBSUB_MAX_MESSAGE_BYTES',
      'largest inbound gRPC message, in bytes',
      integerIn(64, 2 ** 31 - 1),
      L.maxMessageBytes,
    ),
    opt(
      '--max-connections <n>',
      'PERSIST_PUBSUB_MAX_CONNECTIONS',
      'open connections at most; more get RESOURCE_EXHAUSTED',
      count,
      L.maxConnections,
    ),
    opt(
      '--max-tcp-connections <n>',
      'PERSIST_PUBSUB_MAX_TCP_CONNECTIONS',
      'open connections at most, TCP and Unix-socket ones alike (each carries up to 1000 calls); more are closed at once',
      count,
      L.maxTcpConnections,
    ),
    opt(
      '--max-subscriptions-per-connection <n>',
      'PERSIST_PUBSUB_MAX_SUBSCRIPTIONS_PER_CONNECTION',
      'subscriptions one connection may hold',
      count,
      L.maxSubscriptionsPerConnection,
    ),
    opt(
      '--max-shard-id-bytes <n>',
      'PERSIST_PUBSUB_MAX_SHARD_ID_BYTES',
      'longest shard id, in bytes',
      integerIn(1, MAX_SHARD_ID_BYTES_LIMIT),
      L.maxShardIdBytes,
    ),
    opt(
      '--max-queue-messages <n>',
      'PERSIST_PUBSUB_MAX_QUEUE_MESSAGES',
      'outbound queue per connection, in messages; beyond it diffs are dropped and counted',
      count,
      L.maxQueueMessages,
    ),
    opt(
      '--max-queue-bytes <n>',
      'PERSIST_PUBSUB_MAX_QUEUE_BYTES',
      'outbound queue per connection, in bytes',
      count,
      L.maxQueueBytes,
    ),
    opt(
      '--stuck-connection-timeout-ms <ms>',
      'PERSIST_PUBSUB_STUCK_CONNECTION_TIMEOUT_MS',
      'close a connection whose queue stays full this long, in ms',
      positiveMs,
      L.stuckConnectionTimeoutMs,
    ),
    opt(
      '--resume-ring-size <n>',
      'PERSIST_PUBSUB_RESUME_RING_SIZE',
      'recent diffs kept per shard for resuming subscribers (0 disables)',
      integerIn(0, 1_000_000),
      L.resumeRingSize,
    ),
    opt(
      '--max-resume-bytes <n>',
      'PERSIST_PUBSUB_MAX_RESUME_BYTES',
      "bytes kept across all shards' resume rings",
      integerIn(0, Number.MAX_SAFE_INTEGER),
      L.maxResumeBytes,
    ),
    opt(
      '--keepalive-time-ms <ms>',
      'PERSIST_PUBSUB_KEEPALIVE_TIME_MS',
      'ping idle connections this often to find dead peers, in ms (0 disables)',
      ms,
      d.keepaliveTimeMs,
    ),
    opt(
      '--keepalive-timeout-ms <ms>',
      'PERSIST_PUBSUB_KEEPALIVE_TIMEOUT_MS',
      'close a connection whose ping is unanswered this long, in ms',
      positiveMs,
      d.keepaliveTimeoutMs,
    ),
    opt(
      '--max-connection-age-ms <ms>',
      'PERSIST_PUBSUB_MAX_CONNECTION_AGE_MS',
      'close connections older than this (±10% jitter) by GOAWAY, in ms (0: never)',
      ms,
      d.maxConnectionAgeMs,
    ),
    opt(
      '--max-connection-age-grace-ms <ms>',
      'PERSIST_PUBSUB_MAX_CONNECTION_AGE_GRACE_MS',
      "after the max-age GOAWAY, end the connection's open streams with UNAVAILABLE this long later, in ms (0: at once; clients move meanwhile)",
      ms,
      d.maxConnectionAgeGraceMs,
    ),
    opt(
      '--handshake-timeout-ms <ms>',
      'PERSIST_PUBSUB_HANDSHAKE_TIMEOUT_MS',
      'close a connection, TCP or Unix socket, that has not sent its first request (HTTP/2 preface included) this long after connecting, in ms; on TLS, this long for the TLS handshake and as long again for the first request',
      positiveMs,
      d.handshakeTimeoutMs,
    ),
    opt(
      '--http2-server <kind>',
      'PERSIST_PUBSUB_HTTP2_SERVER',
      "the HTTP/2 server for plain TCP and Unix sockets: own (the broker's framing on net) or node (node:http2); TLS is always node:http2's",
      oneOf(HTTP2_SERVER_KINDS),
      d.http2Server,
    ),
    opt(
      '--write-window-us <us>',
      'PERSIST_PUBSUB_WRITE_WINDOW_US',
      "a subscriber's connection written less than this long ago waits for the window's end, and what arrived meanwhile goes in one write, in µs (0: every turn's diffs at once)",
      integerIn(0, MAX_WRITE_WINDOW_US),
      d.writeWindowUs,
    ),
    opt(
      '--max-caller-id-labels <n>',
      'PERSIST_PUBSUB_MAX_CALLER_ID_LABELS',
      'distinct caller ids with their own metric label; later ones count as "other"',
      integerIn(0, 100_000),
      d.maxCallerIdLabels,
    ),
    opt(
      '--drain-deadline-ms <ms>',
      'PERSIST_PUBSUB_DRAIN_DEADLINE_MS',
      'on SIGTERM/SIGINT, connections still open after this long are closed, in ms',
      ms,
      d.drainDeadlineMs,
    ),
    opt(
      '--forward-pushes <bool>',
      'PERSIST_PUBSUB_FORWARD_PUSHES',
      'runtime flag: forward pushed diffs to subscribers (a --flags-file overrides it)',
      parseBoolean,
      d.forwardPushes,
    ),
    opt(
      '--reflection <bool>',
      'PERSIST_PUBSUB_REFLECTION',
      'serve gRPC server reflection (grpc.reflection.v1 and v1alpha) on --listen, for grpcurl',
      parseBoolean,
      d.reflection,
    ),
    opt(
      '--flags-file <path>',
      'PERSIST_PUBSUB_FLAGS_FILE',
      'JSON runtime flags such as {"forwardPushes": false}; reloaded when it changes and on SIGHUP (an invalid file is logged and ignored)',
      parsePath,
    ),
    opt(
      '--log-level <level>',
      'PERSIST_PUBSUB_LOG_LEVEL',
      `log level: ${LOG_LEVELS.join(', ')}`,
      oneOf(LOG_LEVELS),
      d.logLevel,
    ),
    opt(
      '--log-format <format>',
      'PERSIST_PUBSUB_LOG_FORMAT',
      'auto: pretty when stdout is a terminal, else JSON lines; json; pretty',
      oneOf(LOG_FORMATS),
      d.logFormat,
    ),
  ];
  for (const o of options) command.addOption(o);
  return command;
}

/** Reads a file a flag names; a `ConfigError` naming the flag if it cannot. */
async function readFlagFile(flag: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(flag, `${flag}: cannot read ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

async function readPem(flag: string, path: string): Promise<Buffer> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    throw new ConfigError(flag, `${flag}: cannot read ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!data.includes('-----BEGIN ')) {
    throw new ConfigError(flag, `${flag}: ${path} is not a PEM file (no "-----BEGIN" line)`);
  }
  return data;
}

/**
 * Checks what one flag cannot check alone and reads the files the flags name. Throws a
 * `ConfigError` naming the flag; nothing has been started when it does.
 */
export async function resolveBrokerConfig(
  raw: RawBrokerOptions,
  env: NodeJS.ProcessEnv = process.env,
): Promise<BrokerCliConfig> {
  if (raw.tlsKey !== undefined && raw.tlsCert === undefined) {
    throw new ConfigError('--tls-key', '--tls-key needs --tls-cert');
  }
  if (raw.tlsCert !== undefined && raw.tlsKey === undefined) {
    throw new ConfigError('--tls-cert', '--tls-cert needs --tls-key');
  }
  if (raw.tlsClientCa !== undefined && raw.tlsCert === undefined) {
    throw new ConfigError(
      '--tls-client-ca',
      '--tls-client-ca (mTLS) needs --tls-cert and --tls-key',
    );
  }
  if (raw.maxQueueBytes < raw.maxMessageBytes) {
    throw new ConfigError(
      '--max-queue-bytes',
      `--max-queue-bytes (${raw.maxQueueBytes}) must be at least --max-message-bytes (${raw.maxMessageBytes}), or no large diff could ever be queued`,
    );
  }
  const { listen } = raw;
  if (
    !isUnixSocketAddress(listen) &&
    listen.port !== 0 &&
    listen.port === raw.adminListen.port &&
    listen.host === raw.adminListen.host
  ) {
    throw new ConfigError('--admin-listen', '--admin-listen must differ from --listen');
  }
  if (isUnixSocketAddress(listen) && raw.tlsCert !== undefined) {
    throw new ConfigError(
      '--tls-cert',
      '--tls-cert is for a TCP --listen: on a Unix socket the file permissions (--socket-mode) decide who connects',
    );
  }
  if (raw.socketMode !== undefined && !isUnixSocketAddress(listen)) {
    throw new ConfigError('--socket-mode', '--socket-mode needs --listen unix:PATH');
  }

  const broker: BrokerOptions = {
    listen: isUnixSocketAddress(listen)
      ? { path: listen.path, ...(raw.socketMode === undefined ? {} : { mode: raw.socketMode }) }
      : listen,
    limits: {
      maxMessageBytes: raw.maxMessageBytes,
      maxConnections: raw.maxConnections,
      maxTcpConnections: raw.maxTcpConnections,
      maxSubscriptionsPerConnection: raw.maxSubscriptionsPerConnection,
      maxShardIdBytes: raw.maxShardIdBytes,
      maxQueueMessages: raw.maxQueueMessages,
      maxQueueBytes: raw.maxQueueBytes,
      stuckConnectionTimeoutMs: raw.stuckConnectionTimeoutMs,
      resumeRingSize: raw.resumeRingSize,
      maxResumeBytes: raw.maxResumeBytes,
    },
    keepaliveTimeMs: raw.keepaliveTimeMs,
    keepaliveTimeoutMs: raw.keepaliveTimeoutMs,
    maxConnectionAgeMs: raw.maxConnectionAgeMs,
    maxConnectionAgeGraceMs: raw.maxConnectionAgeGraceMs,
    handshakeTimeoutMs: raw.handshakeTimeoutMs,
    http2Server: raw.http2Server,
    writeWindowUs: raw.writeWindowUs,
    maxCallerIdLabels: raw.maxCallerIdLabels,
    reflection: raw.reflection,
  };

  if (raw.tlsCert !== undefined && raw.tlsKey !== undefined) {
    broker.tls = {
      cert: await readPem('--tls-cert', raw.tlsCert),
      key: await readPem('--tls-key', raw.tlsKey),
      clientCa:
        raw.tlsClientCa === undefined
          ? undefined
          : await readPem('--tls-client-ca', raw.tlsClientCa),
    };
  }

  broker.authToken = await readAuthToken(raw.authTokenFile, env);

  let tokensFile: BrokerCliConfig['tokensFile'];
  if (raw.authTokensFile !== undefined) {
    const text = await readFlagFile('--auth-tokens-file', raw.authTokensFile);
    const parsed = parseTokensFile(text);
    if (!parsed.ok) {
      throw new ConfigError(
        '--auth-tokens-file',
        `--auth-tokens-file ${raw.authTokensFile}: ${parsed.message}`,
      );
    }
    if (broker.authToken !== undefined && parsed.tokens.some((t) => t.token === broker.authToken)) {
      throw new ConfigError(
        '--auth-tokens-file',
        `--auth-tokens-file ${raw.authTokensFile}: the single token (--auth-token-file or ${AUTH_TOKEN_ENV}) is also one of its tokens; give it one place`,
      );
    }
    broker.tokens = parsed.tokens;
    tokensFile = { path: raw.authTokensFile, text };
  }

  const baseFlags: BrokerFlags = { forwardPushes: raw.forwardPushes };
  let flagsFile: BrokerCliConfig['flagsFile'];
  let flags = baseFlags;
  if (raw.flagsFile !== undefined) {
    const text = await readFlagFile('--flags-file', raw.flagsFile);
    const parsed = parseBrokerFlagsFile(text);
    if (!parsed.ok) {
      throw new ConfigError('--flags-file', `--flags-file ${raw.flagsFile}: ${parsed.message}`);
    }
    flags = { ...baseFlags, ...parsed.flags };
    flagsFile = { path: raw.flagsFile, text };
  }
  broker.flags = flags;

  return {
    broker,
    adminListen: raw.adminListen,
    drainDeadlineMs: raw.drainDeadlineMs,
    logLevel: raw.logLevel,
    logFormat: raw.logFormat,
    baseFlags,
    flagsFile,
    tokensFile,
  };
}

/**
 * The bearer token of `--auth-token-file` (the file's text, one trailing newline trimmed), else
 * of `PERSIST_PUBSUB_AUTH_TOKEN`, else none: the broker's single token, and what `tail` sends.
 * A `ConfigError` naming the flag or variable if it cannot be read or is not a header value.
 */
export async function readAuthToken(
  file: string | undefined,
  env: NodeJS.ProcessEnv,
): Promise<string | undefined> {
  if (file !== undefined) {
    const text = await readFlagFile('--auth-token-file', file);
    return checkToken('--auth-token-file', text.replace(/\r?\n$/, ''));
  }
  const fromEnv = env[AUTH_TOKEN_ENV];
  return fromEnv === undefined ? undefined : checkToken(AUTH_TOKEN_ENV, fromEnv);
}

/** A bearer token must be a valid HTTP header value: visible ASCII, no spaces. */
function checkToken(source: string, token: string): string {
  if (token.length === 0) throw new ConfigError(source, `${source}: the token is empty`);
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new ConfigError(
      source,
      `${source}: the token must be visible ASCII without spaces (it travels in a header)`,
    );
  }
  return token;
}
