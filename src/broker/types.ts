/**
 * The broker's public contract: what `createBroker()` returns and takes. The data plane (gRPC
 * server, subscriptions, fan-out) implements it; the admin HTTP server and the CLI consume it.
 * The broker knows nothing of Consensus or shard state.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Clock } from '../util/index.js';
import type { TokenGrant } from './token-scopes.js';

/** A listen address. Port 0 picks a free port (read the bound one from `Broker.address`). */
export interface HostPort {
  host: string;
  port: number;
}

/**
 * A Unix domain socket to listen on: a sidecar broker whose clients share its host skips the
 * TCP/IP stack (README "Operating: a Unix socket"). On start a stale socket file at `path` (one
 * that nothing accepts on) is removed; any other file there is an error. The file is removed on
 * close. No TLS on a Unix socket: the file's permissions decide who may connect.
 */
export interface UnixSocketAddress {
  /** The socket file, absolute or relative to the working directory. */
  path: string;
  /**
   * The socket file's permission bits, set right after it is bound (e.g. `0o660`: owner and
   * group may connect). Until then, and without it, the file has the process umask's mode; to
   * close that window keep the socket in a directory only its clients can enter.
   * @default the umask's (typically 0o755: anyone may connect)
   */
  mode?: number | undefined;
}

/** Where the broker's gRPC server listens: TCP (`{ host, port }`) or a Unix socket (`{ path }`). */
export type ListenAddress = HostPort | UnixSocketAddress;

/** TLS for the gRPC port: PEM contents (not paths; the CLI reads the files). */
export interface BrokerTlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
  /** CA bundle to verify client certificates; set it to require mTLS. */
  clientCa?: string | Buffer | undefined;
}

/** Runtime flags of the broker: can be changed while it runs (`Broker.setFlags`). */
export interface BrokerFlags {
  /** Forward pushed diffs to subscribers. Off: pushes are accepted and dropped (counted). @default true */
  forwardPushes: boolean;
}

export interface BrokerLimits {
  /** Largest inbound gRPC message, in bytes. @default 4 MiB */
  maxMessageBytes: number;
  /** Open connections at most; more are refused with RESOURCE_EXHAUSTED. @default 10000 */
  maxConnections: number;
  /**
   * Connections at most, TCP and Unix-socket ones alike (the name is older than the socket
   * listener), each carrying any number of calls up to HTTP/2's stream limit; more are closed
   * at once. @default 10000
   */
  maxTcpConnections: number;
  /** Subscriptions one connection may hold. @default 100000 */
  maxSubscriptionsPerConnection: number;
  /** Longest shard id, in bytes. @default 256 */
  maxShardIdBytes: number;
  /** Outbound queue per connection, in messages. @default 1024 */
  maxQueueMessages: number;
  /** Outbound queue per connection, in bytes. @default 16 MiB */
  maxQueueBytes: number;
  /** A connection whose queue stays full this long is closed (RESOURCE_EXHAUSTED). @default 30000 */
  stuckConnectionTimeoutMs: number;
  /** Diffs kept per shard for resume. @default 64 */
  resumeRingSize: number;
  /** Bytes kept across all shards' resume rings; the least recently pushed go first. @default 64 MiB */
  maxResumeBytes: number;
}

export interface BrokerOptions {
  /** gRPC listen address: TCP, or a Unix socket (`{ path }`). @default 127.0.0.1:6879 */
  listen?: ListenAddress | undefined;
  /** TLS for a TCP listener (refused with a Unix socket). */
  tls?: BrokerTlsOptions | undefined;
  /**
   * If set, clients must send `authorization: Bearer <token>`; otherwise UNAUTHENTICATED. With
   * `tokens` too, this one token stays unscoped (its callers name themselves by header).
   */
  authToken?: string | undefined;
  /**
   * Scoped tokens: each a name (its streams' caller id, instead of the header) and the shard-id
   * patterns it may publish and subscribe to (README "Operating: auth"). Set (even to `[]`),
   * every PubSub call needs one of these tokens (or `authToken`); replaced by `setTokens`.
   * @default none (no scoped tokens)
   */
  tokens?: readonly TokenGrant[] | undefined;
  limits?: Partial<BrokerLimits> | undefined;
  flags?: Partial<BrokerFlags> | undefined;
  /** Ping idle connections this often to find dead peers, in ms. 0 disables. @default 30000 */
  keepaliveTimeMs?: number | undefined;
  /** Close a connection whose keepalive ping is unanswered this long, in ms. @default 10000 */
  keepaliveTimeoutMs?: number | undefined;
  /** Close connections older than this (with ±10% jitter) by GOAWAY, in ms. 0: never. @default 0 */
  maxConnectionAgeMs?: number | undefined;
  /**
   * After the max-age GOAWAY, the connection's open streams run on this long (clients move to
   * a new connection meanwhile: the SDK opens its next one at once and overlaps the two), then
   * are ended with UNAVAILABLE, in ms. 0: ended at once. @default 10000
   */
  maxConnectionAgeGraceMs?: number | undefined;
  /**
   * A connection, TCP or Unix socket, must send its first request (HTTP/2 preface included)
   * within this long of connecting, or it is closed, in ms. On TLS the TLS handshake has this
   * long, and the first request as long again after it. @default 10000
   */
  handshakeTimeoutMs?: number | undefined;
  /**
   * Which HTTP/2 server serves plain gRPC (TCP or Unix socket): `own` (our framing on `net`,
   * read with `onread`) or `node` (`node:http2`). TLS is served by `node:http2` either way.
   * @default 'own'
   */
  http2Server?: 'own' | 'node' | undefined;
  /**
   * The write window, in µs: a subscriber's connection written less than this long ago waits
   * for the window's end, and what arrived meanwhile goes in one write (fewer writes and
   * subscriber wake-ups per diff, at up to this much added latency); one idle longer is written
   * at once (`src/util/write-window.ts`). 0: every event-loop turn's diffs are written at once.
   * @default 0
   */
  writeWindowUs?: number | undefined;
  /** Metrics go here; never the global registry. @default a new Registry */
  registry?: Registry | undefined;
  logger?: Logger | undefined;
  /** Wall clock for forwarded timestamps, ms since the Unix epoch. @default clock.nowMs */
  now?: (() => number) | undefined;
  /** Time and timers (keepalive, max age, drain, stuck connections, grace periods). @default systemClock */
  clock?: Clock | undefined;
  /**
   * Distinct caller ids that get their own metric label; later ones are counted as `other`.
   * @default 100
   */
  maxCallerIdLabels?: number | undefined;
  /**
   * Serve gRPC server reflection (`grpc.reflection.v1` and `v1alpha`) on the gRPC port, so
   * grpcurl can list and describe the services. @default true
   */
  reflection?: boolean | undefined;
  /**
   * Hooks for a module that extends this broker, e.g. the NATS bridge (`createNatsBridge`).
   * @default none
   */
  observer?: BrokerObserver | undefined;
}

/** A push the broker accepted for fan-out, as seen by a `BrokerObserver`. */
export interface ObservedPush {
  shardId: string;
  seqno: bigint;
  /** The raw `ProtoPushDiff` bytes, exactly as forwarded to subscribers (extensions included). */
  pushDiff: Uint8Array;
  /** The sending connection (`InProcessConnection.connId` for a same-process sender). */
  connId: string;
}

/**
 * Called synchronously on the broker's event loop by the data plane; each hook must return
 * quickly and never throw (a throw is logged and ignored). Used by the NATS bridge to follow
 * which shards have local subscribers and which diffs local clients pushed.
 */
export interface BrokerObserver {
  /** A shard gained its first subscriber on this broker. */
  shardActive?: ((shardId: string) => void) | undefined;
  /** A shard lost its last subscriber on this broker (unsubscribe or disconnect). */
  shardIdle?: ((shardId: string) => void) | undefined;
  /** A push was accepted for fan-out (not called while `forwardPushes` is off). */
  pushed?: ((push: ObservedPush) => void) | undefined;
  /** Called once, when the broker is created, with what the observer may do to it. */
  attached?: ((controls: BrokerObserverControls) => void) | undefined;
}

/** What a `BrokerObserver` may ask of the broker. */
export interface BrokerObserverControls {
  /**
   * Sends a gap notice (reason `resume_unavailable`, from `fromSeqno`, 0 if unknown) for the
   * shard to each local subscriber that understands extensions, so it reads Consensus now.
   */
  notifyGap(shardId: string, fromSeqno?: bigint): void;
}

/** A message delivered to a same-process connection (already decoded: no serialization). */
export type InProcessMessage =
  | {
      kind: 'push';
      shardId: string;
      seqno: bigint;
      diff: Uint8Array;
      /** The publisher's commit time (extension), ms since the Unix epoch, if it sent one. */
      originTimestampMs: number | undefined;
      /** The broker's time when it forwarded the diff, ms since the Unix epoch. */
      timestampMs: number;
    }
  | {
      kind: 'gap';
      shardId: string;
      reason: 'slow_consumer' | 'resume_unavailable' | 'not_forwarding';
      /** Lowest seqno that may be missing (0n if unknown). */
      fromSeqno: bigint;
      /** Diffs not delivered (0 if unknown). */
      dropped: number;
    }
  | {
      /** The broker refused a subscribe or push of `shardId`; the connection stays open. */
      kind: 'refused';
      shardId: string;
      reason: 'invalid_shard_id' | 'subscription_limit' | 'permission_denied';
      detail: string;
      /** Which call was refused. */
      call: 'subscribe' | 'push';
    };

export interface InProcessConnectOptions {
  /** As the `persist-pubsub-caller-id` header of a gRPC client. @default 'unknown' */
  callerId?: string | undefined;
  /**
   * Receives forwarded diffs and gap notices, asynchronously (never inside `push`), in order.
   * A same-process connection always understands extensions (gets gap notices).
   */
  onMessage: (message: InProcessMessage) => void;
  /** Called once when the broker ends the connection (close, destroy, a limit). */
  onClose?: ((reason: { code: string; message: string }) => void) | undefined;
  /**
   * The broker's own helper (the NATS bridge), not a client: a drain does not wait for it to
   * leave, and ends it with whatever is left once the last client is gone. @default false
   */
  internal?: boolean | undefined;
}

/**
 * A connection to a broker in the same process: the same fan-out semantics as a gRPC
 * connection (a push goes to every other subscriber of the shard; never back to its sender),
 * the same limits and queues, but no serialization on the way in or out.
 */
export interface InProcessConnection {
  readonly connId: string;
  /** Publishes a diff. Never waits; throws a `BrokerError` on an invalid shard id or when closed. */
  push(shardId: string, seqno: bigint, diff: Uint8Array, originTimestampMs?: number): void;
  /** Idempotent. With `resumeAfterSeqno`, first replays held diffs newer than it. */
  subscribe(shardId: string, resumeAfterSeqno?: bigint): void;
  /** Idempotent. */
  unsubscribe(shardId: string): void;
  /** Removes every subscription. Idempotent. */
  close(): void;
}

/** One shard in the admin listing. */
export interface ShardInfo {
  shardId: string;
  subscribers: number;
  /** Highest seqno seen pushed for this shard, if any is still in the ring. */
  lastSeqno?: string | undefined;
}

/** One connection in the admin listing. */
export interface ConnectionInfo {
  connId: string;
  callerId: string;
  remoteAddress: string;
  connectedAtMs: number;
  subscriptions: number;
  queueMessages: number;
  queueBytes: number;
  dropped: number;
}

export interface Page<T> {
  items: T[];
  /** Absent when the listing is done. Soft guarantees as Consensus `listKeys`. */
  nextPageToken?: string | undefined;
}

export interface PageRequest {
  pageSize?: number | undefined;
  pageToken?: string | undefined;
}

/** Broker lifecycle, one tagged state. */
export type BrokerState = 'starting' | 'serving' | 'draining' | 'closed';

/**
 * A broker. `A` is the kind of address it listens on: `createBroker` infers it from
 * `options.listen` (a TCP `HostPort` unless given a Unix socket), so `broker.address.port` needs
 * no narrowing for a TCP broker; code that takes any broker takes `Broker<ListenAddress>`.
 */
export interface Broker<A extends ListenAddress = HostPort> {
  /** The bound gRPC address (after `start()`): the bound port, or the socket path. */
  readonly address: A;
  readonly state: BrokerState;
  readonly registry: Registry;
  /** Binds the gRPC port and starts serving. */
  start(options?: { signal?: AbortSignal | undefined }): Promise<void>;
  /** True while serving and not draining (readiness). */
  isReady(): boolean;
  listShards(request?: PageRequest): Page<ShardInfo>;
  listConnections(request?: PageRequest): Page<ConnectionInfo>;
  readonly flags: Readonly<BrokerFlags>;
  /** Changes runtime flags; takes effect for the next message. */
  setFlags(flags: Partial<BrokerFlags>): void;
  /**
   * Replaces the scoped tokens (a reload of `--auth-tokens-file`): a stream whose token is gone
   * ends with UNAUTHENTICATED; the others take their token's new scope at once (subscriptions
   * it no longer covers are dropped). Throws a `BrokerError('invalid_argument')` naming the bad
   * entry, with the tokens in force unchanged, on a bad list or a broker created without
   * `tokens`.
   */
  setTokens(tokens: readonly TokenGrant[]): void;
  /**
   * Graceful drain: stop accepting, send GOAWAY, let clients go, and close what is left at the
   * deadline. Idempotent.
   */
  close(options?: {
    deadlineMs?: number | undefined;
    /** Aborting it cuts the drain short: what is left is destroyed at once. */
    signal?: AbortSignal | undefined;
  }): Promise<void>;
  /** Immediate: every connection is destroyed. */
  destroy(): void;
  /** A same-process connection (see `InProcessConnection`). Only while serving. */
  connectInProcess(options: InProcessConnectOptions): InProcessConnection;
}
