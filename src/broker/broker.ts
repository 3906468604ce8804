/**
 * `createBroker()`: the persist pubsub broker's data plane, a gRPC server speaking
 * `mz_persist_client.internal.service.ProtoPersistPubSub/PubSub` (wire-compatible with
 * Materialize's server) and `grpc.health.v1.Health`, plus same-process connections. This file
 * wires the parts together and owns the lifecycle; each part is its own module:
 * - `grpc-server.ts`: HTTP/2 (plain or TLS), TCP limits, routing by method path; the HTTP/2
 *   server itself is `server-stream.ts`'s interface, `own-h2-server.ts` + `h2-server-session.ts`
 *   or `node-h2-server.ts`;
 * - `pubsub-stream.ts`: one PubSub call (admission, parsing, writes);
 * - `in-process-connection.ts`: same-process connections (no serialization);
 * - `fanout.ts`: subscriptions, broadcasts, bounded queues, gap notices, resume;
 * - `keepalive.ts`: per-session pings and maximum age; `listings.ts`: the admin listings;
 * - `health.ts`: the health service; `reflection.ts`: gRPC server reflection.
 *
 * ## Stack
 * Our own gRPC framing, not grpc-js: grpc-js costs tens of µs of per-message work, a raw HTTP/2
 * write a few, and several gRPC messages can share one write (the measurements are in
 * bench/results/notes.md, "Broker"). HTTP/2 is one of two servers behind `server-stream.ts`
 * (`http2Server`, `--http2-server`): `own` (the default; our session on `net`,
 * `h2-server-session.ts`, with the frames and HPACK of `src/protocol/h2`) or `node`
 * (`node:http2`, `node-h2-server.ts`), which also serves TLS either way:
 * - requests: `POST`, `content-type: application/grpc[+proto]`; anything else is refused
 *   (HTTP 415, or a trailers-only UNIMPLEMENTED for an unknown path). `grpc-encoding` other
 *   than identity: a compressed message ends the call with UNIMPLEMENTED (we advertise
 *   `grpc-accept-encoding: identity`). `grpc-timeout` is ignored: a pubsub call lives as long
 *   as its connection.
 * - the envelope of each inbound message is decoded once by the protocol codec; a push keeps its
 *   raw `push_diff` bytes, which are forwarded verbatim (extension fields included) behind a
 *   fresh broker timestamp. That frame is encoded once per broadcast and the same Buffer goes
 *   to every subscriber (`fanout.ts`).
 * - writes are coalesced per connection per event-loop turn (one socket write per flush);
 *   `write()` returning false (HTTP/2 flow control or socket backpressure) stops writes to that
 *   stream until 'drain'; meanwhile its bounded queue fills and then drops (counted, gap notice).
 * - no BigInt comparison on the per-push path (each is a V8 runtime call).
 *
 * ## Extensions and old clients
 * Gap notices (oneof field 5) and refusal notices (field 6) go only to clients that showed they
 * understand extensions: a request header `persist-pubsub-extensions: 1`, or a subscribe
 * carrying `resume_after_seqno` (from then on). A reference client never sees an unknown
 * variant. A subscribe or push that breaks the shard id rule, or a subscribe over the
 * subscription limit, gets such a client a refusal notice for that shard and its stream stays
 * open; a reference client's stream ends with INVALID_ARGUMENT / RESOURCE_EXHAUSTED, as before.
 *
 * ## Security
 * TLS via `http2.createSecureServer` (ALPN h2; whatever `http2Server` says), optional mTLS (`tls.clientCa`: client
 * certificates are required and verified; a wrong CA fails the handshake), optional bearer
 * token (`authorization: Bearer <token>`, compared in constant time; missing or wrong →
 * UNAUTHENTICATED), and scoped tokens (`tokens`: a name and the shards each token may publish
 * and subscribe to; `bearer-auth.ts`, `token-scopes.ts`, `stream-scopes.ts`), replaced at run
 * time by `setTokens`. Health and reflection calls are exempt from the token. Connections (TCP or Unix socket) are
 * bounded in number and must send a request within `handshakeTimeoutMs`.
 *
 * ## Lifecycle
 * `starting` → `serving` (`start()` bound the port) → `draining` (`close()`) → `closed`; or
 * straight to `closed` (`destroy()`). A drain: health turns NOT_SERVING, the listener stops
 * accepting, every session gets GOAWAY (no new streams); the drain waits (on close events, not
 * by polling) for the clients to leave, up to the deadline (with no client it returns at once;
 * the broker's own `internal` connections, the NATS bridge's, are not clients and do not hold
 * it); streams still open then end with UNAVAILABLE, the helpers with them, and after a short
 * grace for their trailers, what is left is cut. Keepalive pings
 * find dead peers; an optional max connection age (±10% jitter) ends a session's streams with
 * UNAVAILABLE after GOAWAY so clients reconnect elsewhere. Every timer comes from the injected
 * `clock`. Server reflection (`reflection.ts`) is on unless `reflection: false`.
 */
import type { Logger } from 'pino';
import { PUBSUB_METHOD_PATH } from '../protocol/index.js';
import { createBearerAuth } from './bearer-auth.js';
import { observeFanout, validateObserver } from './bridge-observer.js';
import { createCondition } from './condition.js';
import { Connection, type ConnectionOpener } from './connection.js';
import { BrokerError } from './errors.js';
import { createFanoutCore, type FanoutCore } from './fanout.js';
import { createGrpcServer, type GrpcHandler, type GrpcServer } from './grpc-server.js';
import { type CallStatus, GrpcStatus } from './grpc-status.js';
import {
  createHealthService,
  HEALTH_CHECK_PATH,
  HEALTH_LIST_PATH,
  HEALTH_WATCH_PATH,
  type HealthService,
} from './health.js';
import { connectInProcess } from './in-process-connection.js';
import { watchSession } from './keepalive.js';
import { createListings } from './listings.js';
import { createBrokerMetrics } from './metrics.js';
import { DEFAULT_DRAIN_DEADLINE_MS, formatListenAddress, resolveBrokerOptions } from './options.js';
import { createPubSubStreams, type PubSubStreams } from './pubsub-stream.js';
import {
  createReflectionService,
  REFLECTION_V1_PATH,
  REFLECTION_V1ALPHA_PATH,
  type ReflectionService,
} from './reflection.js';
import type { ServerSession } from './server-stream.js';
import { createStreamScopes } from './stream-scopes.js';
import { compileTokenGrants, type TokenGrant } from './token-scopes.js';
import type {
  Broker,
  BrokerFlags,
  BrokerOptions,
  BrokerState,
  HostPort,
  ListenAddress,
  UnixSocketAddress,
} from './types.js';

/** After the drain deadline, streams get this long (at least) to take their trailers, in ms. */
const TRAILERS_GRACE_MIN_MS = 100;
const TRAILERS_GRACE_MAX_MS = 1000;

/** The gRPC methods the server routes, by HTTP/2 path: PubSub, then each extra service. */
function grpcRoutes(
  pubsub: PubSubStreams,
  health: HealthService,
  reflection: ReflectionService | undefined,
): Map<string, GrpcHandler> {
  const routes = new Map<string, GrpcHandler>([[PUBSUB_METHOD_PATH, pubsub.handle]]);
  for (const path of [HEALTH_CHECK_PATH, HEALTH_WATCH_PATH, HEALTH_LIST_PATH]) {
    routes.set(path, (stream) => health.handle(stream, path));
  }
  if (reflection !== undefined) {
    for (const path of [REFLECTION_V1_PATH, REFLECTION_V1ALPHA_PATH]) {
      routes.set(path, (stream) => reflection.handle(stream));
    }
  }
  return routes;
}

/**
 * Creates a broker (not yet listening: call `start()`). Validates `options` at once. Its
 * address type follows `options.listen`: a Unix socket broker's `address` is its `{ path }`.
 */
export function createBroker(
  options: BrokerOptions & { listen: UnixSocketAddress },
): Broker<UnixSocketAddress>;
export function createBroker(options?: BrokerOptions & { listen?: HostPort | undefined }): Broker;
export function createBroker(options?: BrokerOptions): Broker<ListenAddress>;
export function createBroker(options: BrokerOptions = {}): Broker<ListenAddress> {
  const o = resolveBrokerOptions(options);
  const { limits, registry, clock } = o;
  const now = o.now;
  const log: Logger = o.logger.child({ component: 'broker' });
  const flags: BrokerFlags = { ...o.flags };
  let state: BrokerState = 'starting';
  let started = false;
  let bound: ListenAddress = { ...o.listen };
  let closing: Promise<void> | undefined;
  let connSeq = 0;
  /** Woken whenever a connection, session or socket goes away (the drain waits on it). */
  const closed = createCondition(clock);
  /** The broker's own connections (the NATS bridge's): not clients, a drain does not wait. */
  const helpers = new Set<Connection>();

  let core: FanoutCore | undefined;
  const auth = createBearerAuth({ token: o.authToken, tokens: o.tokens });
  let grpc: GrpcServer | undefined;
  const metrics = createBrokerMetrics(
    registry,
    {
      activeConnections: () => core?.connections.size ?? 0,
      tcpConnections: () => grpc?.socketCount ?? 0,
      shards: () => core?.table.shardCount ?? 0,
      subscriptions: () => core?.table.subscriptionCount ?? 0,
      queuedMessages: () => core?.queued().messages ?? 0,
      queuedBytes: () => core?.queued().bytes ?? 0,
      resumeRingBytes: () => core?.resume.totalBytes ?? 0,
      authTokens: () => auth.table?.size ?? 0,
    },
    o.maxCallerIdLabels,
  );
  const fan = observeFanout(
    createFanoutCore({
      limits,
      flags,
      metrics,
      now,
      clock,
      writeWindowUs: o.writeWindowUs,
      onRemoved: () => closed.notify(),
    }),
    validateObserver(options.observer),
    log,
  );
  core = fan;
  const health = createHealthService(() => state === 'serving');

  const opener: ConnectionOpener = {
    refusal() {
      if (state !== 'serving') {
        return {
          reason: 'draining',
          status: { code: GrpcStatus.UNAVAILABLE, message: `broker is ${state}` },
        };
      }
      if (fan.connections.size >= limits.maxConnections) {
        return {
          reason: 'connections',
          status: {
            code: GrpcStatus.RESOURCE_EXHAUSTED,
            message: `too many connections (limit ${limits.maxConnections})`,
          },
        };
      }
      return undefined;
    },
    open(kind, callerId, remoteAddress, sink, extensions, internal = false) {
      const seq = ++connSeq;
      const connId = `c${seq}`;
      const conn = new Connection(
        seq,
        connId,
        callerId,
        metrics.callerLabel(callerId),
        remoteAddress,
        now(),
        kind,
        sink,
        log.child({ connId, callerId }),
        extensions,
      );
      fan.add(conn);
      if (internal) helpers.add(conn);
      conn.log.debug({ kind, remoteAddress, extensions, internal }, 'connection opened');
      return conn;
    },
  };

  const scopes = createStreamScopes({ fan, metrics, log });
  const pubsub = createPubSubStreams({ fan, opener, metrics, limits, log, clock, auth, scopes });

  function onSession(session: ServerSession): void {
    const stop = watchSession(session, {
      keepaliveTimeMs: o.keepaliveTimeMs,
      keepaliveTimeoutMs: o.keepaliveTimeoutMs,
      maxConnectionAgeMs: o.maxConnectionAgeMs,
      clock,
      onDead: () => log.debug('keepalive ping unanswered: session closed'),
      onAgeOut: () => ageOut(session),
    });
    session.onClose(stop);
  }

  /**
   * GOAWAY (no new streams); the open ones run on for `maxConnectionAgeGraceMs`, so a client
   * that moves at once (the SDK's handover) loses nothing, then are ended with UNAVAILABLE.
   */
  function ageOut(session: ServerSession): void {
    log.debug({ graceMs: o.maxConnectionAgeGraceMs }, 'max connection age reached: GOAWAY');
    session.goAway();
    if (session.destroyed) return;
    const end = () =>
      pubsub.endSession(session, {
        code: GrpcStatus.UNAVAILABLE,
        message: 'max connection age reached; reconnect',
      });
    if (o.maxConnectionAgeGraceMs === 0) {
      end();
      return;
    }
    const grace = clock.setTimer(() => {
      if (!session.destroyed) end();
    }, o.maxConnectionAgeGraceMs);
    session.onClose(() => grace.cancel());
  }

  const server = createGrpcServer({
    listen: o.listen,
    tls: o.tls,
    http2Server: o.http2Server,
    routes: grpcRoutes(pubsub, health, o.reflection ? createReflectionService() : undefined),
    maxTcpConnections: limits.maxTcpConnections,
    handshakeTimeoutMs: o.handshakeTimeoutMs,
    clock,
    metrics,
    log,
    onSession,
    onClosed: () => closed.notify(),
    readPaused: () => fan.overBudget(),
  });
  grpc = server;
  const listings = createListings(fan);

  // ------------------------------------------------------------------------------------------
  // Lifecycle

  async function start(opts?: { signal?: AbortSignal | undefined }): Promise<void> {
    if (started) throw new BrokerError('unavailable', 'broker already started');
    if (state !== 'starting') throw new BrokerError('unavailable', `broker is ${state}`);
    started = true;
    bound = await server.listen(opts?.signal);
    state = 'serving';
    health.notify();
    log.info({ address: formatListenAddress(bound), tls: o.tls !== undefined }, 'broker serving');
  }

  function endAllConnections(status: CallStatus): void {
    for (const conn of [...fan.connections.values()]) fan.end(conn, status, 'end');
  }

  /** Client connections still open: every connection but the broker's own helpers. */
  function clientCount(): number {
    for (const h of helpers) if (h.state === 'closed') helpers.delete(h);
    return fan.connections.size - helpers.size;
  }

  async function drain(deadlineMs: number): Promise<void> {
    state = 'draining';
    log.info({ deadlineMs }, 'broker draining');
    health.notify();
    const listenerClosed = server.stopAccepting();
    server.goAway();
    // Returns at once when no client is connected; helpers (the bridge) are ended below, after
    // the clients, so diffs from other brokers reach local clients until they leave.
    await closed.waitFor(() => state !== 'draining' || clientCount() === 0, deadlineMs);
    endAllConnections({ code: GrpcStatus.UNAVAILABLE, message: 'broker is shutting down' });
    health.endAll();
    // Give streams a moment to take their trailers, then cut what is left.
    const grace = Math.min(TRAILERS_GRACE_MAX_MS, Math.max(TRAILERS_GRACE_MIN_MS, deadlineMs));
    await closed.waitFor(() => state !== 'draining' || server.sessionCount === 0, grace);
    server.destroyAll();
    await listenerClosed;
    fan.dispose();
    state = 'closed';
    log.info('broker closed');
  }

  function destroyNow(): void {
    if (state === 'closed') return;
    state = 'closed';
    health.notify();
    endAllConnections({ code: GrpcStatus.UNAVAILABLE, message: 'broker destroyed' });
    server.destroyAll();
    fan.dispose();
    closed.notify();
    closing ??= Promise.resolve();
  }

  return {
    get address() {
      return bound;
    },
    get state() {
      return state;
    },
    registry,
    start,
    isReady: () => state === 'serving',
    listShards: listings.listShards,
    listConnections: listings.listConnections,
    get flags() {
      return { ...flags };
    },
    setFlags(next: Partial<BrokerFlags>) {
      if (typeof next !== 'object' || next === null) {
        throw new BrokerError('invalid_argument', 'setFlags: flags must be an object');
      }
      if (next.forwardPushes !== undefined) {
        if (typeof next.forwardPushes !== 'boolean') {
          throw new BrokerError('invalid_argument', 'flags.forwardPushes must be a boolean');
        }
        if (flags.forwardPushes !== next.forwardPushes) {
          log.info({ forwardPushes: next.forwardPushes }, 'flag changed');
        }
        flags.forwardPushes = next.forwardPushes;
      }
    },
    setTokens(grants: readonly TokenGrant[]) {
      const table = compileTokenGrants(grants);
      auth.setTable(table);
      const { revokedStreams, droppedSubscriptions } = scopes.reload(table);
      log.info({ tokens: table.size, revokedStreams, droppedSubscriptions }, 'tokens replaced');
    },
    close(opts) {
      if (closing !== undefined) return closing;
      const deadlineMs = opts?.deadlineMs ?? DEFAULT_DRAIN_DEADLINE_MS;
      if (!Number.isFinite(deadlineMs) || deadlineMs < 0) {
        return Promise.reject(
          new BrokerError('invalid_argument', 'close: deadlineMs must be >= 0'),
        );
      }
      if (state === 'starting' && !started) {
        state = 'closed';
        fan.dispose();
        closing = Promise.resolve();
        return closing;
      }
      const signal = opts?.signal;
      if (signal !== undefined) {
        if (signal.aborted) destroyNow();
        else signal.addEventListener('abort', destroyNow, { once: true });
      }
      closing = drain(deadlineMs);
      return closing;
    },
    destroy: destroyNow,
    connectInProcess: (opts) => connectInProcess({ fan, opener, metrics, limits, log }, opts),
  };
}
