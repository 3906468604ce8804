/**
 * The broker's HTTP/2 server: plain or TLS (`h2` by ALPN, optional mTLS), the TCP-level limits,
 * the session settings, and the routing of gRPC calls by method path to handlers.
 *
 * - Routing: `POST` with `content-type: application/grpc[+proto]` only (else HTTP 415); a path
 *   with no handler gets a trailers-only UNIMPLEMENTED. Extra gRPC services (health, reflection)
 *   are entries of `routes`; nothing else here knows them.
 * - TCP limits: at most `maxTcpConnections` sockets (more are closed at once and counted as
 *   `rejections_total{limit="tcp_connections"}`), and a socket must open its first stream within
 *   `handshakeTimeoutMs` of connecting (TLS handshake, HTTP/2 preface and the first request),
 *   else it is destroyed (`limit="handshake_timeout"`): idle sockets cannot pile up.
 * - Receive windows above HTTP/2's 64 KiB default, so a busy publisher is not stalled by a short
 *   pause of the broker, yet small enough that one read burst fits a subscriber queue.
 * - Small frames must not wait for Nagle's algorithm (40-200 ms stalls with delayed ACKs).
 *
 * Sockets are tracked so that `destroyAll()` can cut them: `Http2Session.destroy()` ends its
 * socket gracefully and waits for the peer, which a peer that stopped reading never allows.
 */
import {
  constants,
  createSecureServer,
  createServer,
  type Http2SecureServer,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../util/index.js';
import { isGrpcContentType, respondTrailersOnly } from './grpc-respond.js';
import { GrpcStatus } from './grpc-status.js';
import type { BrokerMetrics } from './metrics.js';
import type { BrokerTlsOptions, HostPort } from './types.js';

/** Serves one gRPC call whose path it is registered under. */
export type GrpcHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

/** HTTP/2 receive window per stream and per session, in bytes. */
const STREAM_WINDOW_BYTES = 256 * 1024;
const SESSION_WINDOW_BYTES = 1024 * 1024;
const MAX_CONCURRENT_STREAMS = 1000;
/** nghttp2's per-session memory bound, in MiB. */
const MAX_SESSION_MEMORY_MIB = 64;

export interface GrpcServerOptions {
  listen: HostPort;
  tls: BrokerTlsOptions | undefined;
  routes: ReadonlyMap<string, GrpcHandler>;
  maxTcpConnections: number;
  handshakeTimeoutMs: number;
  clock: Clock;
  metrics: BrokerMetrics;
  log: Logger;
  /** A new HTTP/2 session (keepalive and age timers); called once per session. */
  onSession(session: Http2Session): void;
  /** A session or socket closed (the drain waits on this). */
  onClosed(): void;
}

export interface GrpcServer {
  /** Binds and listens; resolves with the bound address. */
  listen(signal?: AbortSignal): Promise<HostPort>;
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
  const sessions = new Set<Http2Session>();
  const sockets = new Set<Socket>();
  /** Sockets that have not opened a stream yet, by peer address, with their deadline. */
  const handshaking = new Map<string, { socket: Socket; timer: Timer }>();
  let server: Http2Server | Http2SecureServer | undefined;
  const peerKey = (s: { remoteAddress?: string | undefined; remotePort?: number | undefined }) =>
    `${s.remoteAddress}|${s.remotePort}`;

  function onConnection(socket: Socket): void {
    if (sockets.size >= o.maxTcpConnections) {
      metrics.rejected('tcp_connections');
      log.debug({ limit: o.maxTcpConnections }, 'TCP connection refused: at the limit');
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    sockets.add(socket);
    const key = peerKey(socket);
    const timer = o.clock.setTimer(() => {
      handshaking.delete(key);
      metrics.rejected('handshake_timeout');
      log.debug({ timeoutMs: o.handshakeTimeoutMs }, 'no request within the handshake timeout');
      socket.destroy();
    }, o.handshakeTimeoutMs);
    handshaking.set(key, { socket, timer });
    socket.once('close', () => {
      sockets.delete(socket);
      const h = handshaking.get(key);
      if (h?.socket === socket) {
        h.timer.cancel();
        handshaking.delete(key);
      }
      o.onClosed();
    });
  }

  function onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => {});
    try {
      const socket = stream.session?.socket;
      if (socket !== undefined && handshaking.size > 0) {
        const key = peerKey(socket);
        handshaking.get(key)?.timer.cancel();
        handshaking.delete(key);
      }
      if (headers[':method'] !== 'POST' || !isGrpcContentType(headers['content-type'])) {
        metrics.rejected('content_type');
        if (!stream.headersSent) stream.respond({ ':status': 415 }, { endStream: true });
        return;
      }
      const path = headers[':path'];
      const handler = path === undefined ? undefined : o.routes.get(path);
      if (handler !== undefined) {
        handler(stream, headers);
        return;
      }
      metrics.rejected('unimplemented');
      respondTrailersOnly(stream, {
        code: GrpcStatus.UNIMPLEMENTED,
        message: `unknown method ${String(path)}`,
      });
    } catch (err) {
      // Defensive: nothing a peer sends may crash the broker.
      log.error({ err }, 'unexpected error handling a stream');
      if (!stream.destroyed) stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    }
  }

  function onSession(session: Http2Session): void {
    sessions.add(session);
    try {
      session.setLocalWindowSize(SESSION_WINDOW_BYTES);
    } catch {
      // A session that is already closing.
    }
    session.on('error', (err) => log.debug({ err }, 'session error'));
    session.once('close', () => {
      sessions.delete(session);
      o.onClosed();
    });
    o.onSession(session);
  }

  return {
    async listen(signal) {
      signal?.throwIfAborted();
      const settings = {
        maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
        initialWindowSize: STREAM_WINDOW_BYTES,
      };
      const srv =
        o.tls === undefined
          ? createServer({ settings, maxSessionMemory: MAX_SESSION_MEMORY_MIB })
          : createSecureServer({
              settings,
              maxSessionMemory: MAX_SESSION_MEMORY_MIB,
              cert: o.tls.cert,
              key: o.tls.key,
              allowHTTP1: false,
              ALPNProtocols: ['h2'],
              handshakeTimeout: o.handshakeTimeoutMs,
              ...(o.tls.clientCa === undefined
                ? {}
                : { ca: o.tls.clientCa, requestCert: true, rejectUnauthorized: true }),
            });
      server = srv;
      srv.on('connection', onConnection);
      srv.on('stream', onStream);
      srv.on('session', onSession);
      srv.on('sessionError', (err) => log.debug({ err }, 'session error'));
      srv.on('tlsClientError', (err) => log.debug({ err }, 'TLS handshake failed'));
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
        srv.listen(o.listen.port, o.listen.host, () => {
          srv.off('error', onError);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
      });
      srv.on('error', (err) => log.error({ err }, 'server error'));
      const addr = srv.address() as AddressInfo;
      return { host: o.listen.host, port: addr.port };
    },
    stopAccepting() {
      const srv = server;
      if (srv === undefined || !srv.listening) return Promise.resolve();
      return new Promise<void>((resolve) => srv.close(() => resolve()));
    },
    goAway() {
      for (const session of sessions) {
        try {
          session.close();
        } catch {
          session.destroy();
        }
      }
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
      for (const h of handshaking.values()) h.timer.cancel();
      handshaking.clear();
      server?.close();
    },
  };
}
