/**
 * The broker's HTTP/2 server: plain or TLS (`h2` by ALPN, optional mTLS), the TCP-level limits,
 * the session settings, and the routing of gRPC calls by method path to handlers. The HTTP/2
 * itself is one of two implementations of `server-stream.ts` (`http2Server`): `own` (our
 * session on `net`, plain TCP) or `node` (`node:http2`, which also serves every TLS listener).
 *
 * - Routing: `POST` with `content-type: application/grpc[+proto]` only (else HTTP 415); a path
 *   with no handler gets a trailers-only UNIMPLEMENTED. Extra gRPC services (health, reflection)
 *   are entries of `routes`; nothing else here knows them.
 * - Connection limits (TCP and Unix-socket connections alike): at most `maxTcpConnections`
 *   sockets (more are closed at once and counted as `rejections_total{limit="tcp_connections"}`),
 *   and a session must open its first stream within `handshakeTimeoutMs` of its start, else it
 *   is destroyed (`limit="handshake_timeout"`): idle sockets cannot pile up. Both HTTP/2 servers
 *   start a plain connection's session as it is accepted, so the deadline counts from the
 *   connect (HTTP/2 preface and first request); a TLS session starts after the TLS handshake,
 *   which `node:http2`'s own `handshakeTimeout` bounds with the same value. The deadline is the
 *   session's, found by the session object a stream carries (no address: a Unix socket's peer
 *   has none).
 * - Receive windows above HTTP/2's 64 KiB default, so a busy publisher is not stalled by a short
 *   pause of the broker, yet small enough that one read burst fits a subscriber queue.
 * - Small frames must not wait for Nagle's algorithm (40-200 ms stalls with delayed ACKs).
 *
 * Sockets are tracked so that `destroyAll()` can cut them: `node:http2`'s session destroy ends
 * its socket gracefully and waits for the peer, which a peer that stopped reading never allows.
 */
import type { AddressInfo, Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import { ErrorCode } from '../protocol/h2/index.js';
import type { Clock, Timer } from '../util/index.js';
import { isGrpcContentType } from './grpc-respond.js';
import { GrpcStatus } from './grpc-status.js';
import type { BrokerMetrics } from './metrics.js';
import { createNodeH2Server } from './node-h2-server.js';
import { isUnixSocketAddress } from './options.js';
import { createOwnH2Server } from './own-h2-server.js';
import type {
  H2ServerEvents,
  H2ServerSettings,
  Http2ServerKind,
  RequestHeaders,
  ServerSession,
  ServerStream,
} from './server-stream.js';
import type { BrokerTlsOptions, ListenAddress } from './types.js';
import { applySocketMode, prepareSocketPath } from './unix-socket-file.js';

/** Serves one gRPC call whose path it is registered under. */
export type GrpcHandler = (stream: ServerStream, headers: RequestHeaders) => void;

/** HTTP/2 receive window per stream and per session, in bytes, and the stream bound. */
const SETTINGS: H2ServerSettings = {
  streamWindowBytes: 256 * 1024,
  connectionWindowBytes: 1024 * 1024,
  maxConcurrentStreams: 1000,
};

export interface GrpcServerOptions {
  listen: ListenAddress;
  tls: BrokerTlsOptions | undefined;
  /** Which implementation serves plain TCP and Unix sockets (TLS is always `node:http2`'s). */
  http2Server: Http2ServerKind;
  routes: ReadonlyMap<string, GrpcHandler>;
  maxTcpConnections: number;
  handshakeTimeoutMs: number;
  clock: Clock;
  metrics: BrokerMetrics;
  log: Logger;
  /** A new HTTP/2 session (keepalive and age timers); called once per session. */
  onSession(session: ServerSession): void;
  /** A session or socket closed (the drain waits on this). */
  onClosed(): void;
  /**
   * True while this turn's work is over its budget (`FanoutCore.overBudget`): the `own` server
   * then stops reading the socket it just read until the next turn. @default never
   */
  readPaused?: (() => boolean) | undefined;
}

export interface GrpcServer {
  /** Binds and listens; resolves with the bound address (a Unix socket's as given). */
  listen(signal?: AbortSignal): Promise<ListenAddress>;
  /** Stops accepting connections; resolves once the listener and every socket are closed. */
  stopAccepting(): Promise<void>;
  /** GOAWAY on every session: no new streams, open ones run on. */
  goAway(): void;
  readonly sessionCount: number;
  readonly socketCount: number;
  /** Destroys every session and socket at once. */
  destroyAll(): void;
}

export function createGrpcServer(o: GrpcServerOptions): GrpcServer {
  const { log, metrics } = o;
  const sessions = new Set<ServerSession>();
  const sockets = new Set<Socket>();
  /** Sessions that have not opened a stream yet, with their deadline. */
  const handshaking = new Map<ServerSession, Timer>();
  /** `stopAccepting()` calls waiting for the last socket to close. */
  const socketsGone: (() => void)[] = [];
  let server: Server | undefined;
  const unixPath = isUnixSocketAddress(o.listen) ? o.listen.path : undefined;

  function onConnection(socket: Socket): void {
    if (sockets.size >= o.maxTcpConnections) {
      metrics.rejected('tcp_connections');
      log.debug({ limit: o.maxTcpConnections }, 'TCP connection refused: at the limit');
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      if (sockets.size === 0) for (const done of socketsGone.splice(0)) done();
      o.onClosed();
    });
  }

  /** The first stream of `session`, or its close: its handshake deadline is off. */
  function handshakeDone(session: ServerSession): void {
    const timer = handshaking.get(session);
    if (timer === undefined) return;
    timer.cancel();
    handshaking.delete(session);
  }

  function onStream(stream: ServerStream): void {
    const { headers } = stream;
    try {
      if (handshaking.size > 0) handshakeDone(stream.session);
      if (headers[':method'] !== 'POST' || !isGrpcContentType(headers['content-type'])) {
        metrics.rejected('content_type');
        stream.respondHttpStatus(415);
        return;
      }
      const path = headers[':path'];
      const handler = path === undefined ? undefined : o.routes.get(path);
      if (handler !== undefined) {
        handler(stream, headers);
        return;
      }
      metrics.rejected('unimplemented');
      stream.respondTrailersOnly({
        code: GrpcStatus.UNIMPLEMENTED,
        message: `unknown method ${String(path)}`,
      });
    } catch (err) {
      // Defensive: nothing a peer sends may crash the broker.
      log.error({ err }, 'unexpected error handling a stream');
      stream.reset(ErrorCode.INTERNAL_ERROR);
    }
  }

  function onSession(session: ServerSession): void {
    sessions.add(session);
    const timer = o.clock.setTimer(() => {
      handshaking.delete(session);
      metrics.rejected('handshake_timeout');
      log.debug({ timeoutMs: o.handshakeTimeoutMs }, 'no request within the handshake timeout');
      session.destroy();
    }, o.handshakeTimeoutMs);
    handshaking.set(session, timer);
    session.onClose(() => {
      sessions.delete(session);
      handshakeDone(session);
      o.onClosed();
    });
    o.onSession(session);
  }

  const events: H2ServerEvents = { onConnection, onSession, onStream };

  return {
    async listen(signal) {
      signal?.throwIfAborted();
      if (unixPath !== undefined) await prepareSocketPath(unixPath);
      signal?.throwIfAborted();
      const srv =
        o.tls === undefined && o.http2Server === 'own'
          ? createOwnH2Server(SETTINGS, events, log, o.clock, o.readPaused)
          : createNodeH2Server(SETTINGS, o.tls, o.handshakeTimeoutMs, events, log);
      server = srv;
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          srv.off('error', onError);
          srv.close();
          reject(signal?.reason);
        };
        const onError = (err: Error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        };
        srv.once('error', onError);
        signal?.addEventListener('abort', onAbort, { once: true });
        const listening = () => {
          srv.off('error', onError);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        if (isUnixSocketAddress(o.listen)) srv.listen(o.listen.path, listening);
        else srv.listen(o.listen.port, o.listen.host, listening);
      });
      srv.on('error', (err) => log.error({ err }, 'server error'));
      if (isUnixSocketAddress(o.listen)) {
        if (o.listen.mode !== undefined) {
          try {
            await applySocketMode(o.listen.path, o.listen.mode);
          } catch (err) {
            srv.close();
            throw err;
          }
        }
        return { ...o.listen };
      }
      const addr = srv.address() as AddressInfo;
      return { host: o.listen.host, port: addr.port };
    },
    stopAccepting() {
      const srv = server;
      if (srv === undefined || !srv.listening) return Promise.resolve();
      // The `own` server's sockets are not the listener's (own-h2-server.ts): wait for them too.
      return new Promise<void>((resolve) => srv.close(() => resolve())).then(
        () =>
          new Promise<void>((resolve) => {
            if (sockets.size === 0) resolve();
            else socketsGone.push(resolve);
          }),
      );
    },
    goAway() {
      for (const session of sessions) session.goAway();
    },
    get sessionCount() {
      return sessions.size;
    },
    get socketCount() {
      return sockets.size;
    },
    destroyAll() {
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
      for (const timer of handshaking.values()) timer.cancel();
      handshaking.clear();
      server?.close();
    },
  };
}
