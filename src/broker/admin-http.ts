/**
 * The HTTP plumbing shared by the admin server and the metrics-only server: binding with an
 * `AbortSignal`, a loopback check, JSON/text responses, and one graceful/immediate close path.
 * Both servers only read state, so requests are small and short: tight timeouts keep a stuck or
 * hostile client from holding sockets.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { AdminError } from './admin-errors.js';
import { formatListenAddress } from './options.js';
import type { HostPort } from './types.js';

/** A request must arrive in full within this long, in ms. */
export const ADMIN_REQUEST_TIMEOUT_MS = 10_000;
/** Idle keep-alive sockets are closed after this long, in ms. */
export const ADMIN_KEEP_ALIVE_TIMEOUT_MS = 5_000;

/** Lifecycle of an HTTP endpoint, one tagged state. */
export type HttpEndpointState = 'created' | 'starting' | 'listening' | 'closing' | 'closed';

/** Handles every request of an endpoint. */
export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;
/** Handles one path; `url` is the request target, parsed once (still untrusted input). */
export type Route = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>;

/** True for addresses only this host can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h.toLowerCase().startsWith('::ffff:')) return isLoopbackHost(h.slice(7));
  return false;
}

/** Validates a listen address once, naming the field. */
export function validateListen(listen: unknown, field: string): HostPort {
  if (typeof listen !== 'object' || listen === null) {
    throw new AdminError('invalid_argument', `${field} must be { host, port }`);
  }
  const { host, port } = listen as Partial<HostPort>;
  if (typeof host !== 'string' || host.length === 0) {
    throw new AdminError('invalid_argument', `${field}.host must be a non-empty string`);
  }
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new AdminError(
      'invalid_argument',
      `${field}.port must be an integer in [0, 65535], got ${String(port)}`,
    );
  }
  return { host, port };
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

export function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  contentType = 'text/plain; charset=utf-8',
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** Error bodies are always `{ "error": { "code", "message" } }`; `code` is stable. */
export function sendError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): void {
  sendJson(res, status, { error: { code, message } }, headers);
}

/** The methods every admin route accepts; HEAD is answered like GET without a body. */
export const READ_METHODS = ['GET', 'HEAD'] as const;

/**
 * Answers 404 for a path not in `routes`, 405 (with `Allow`) for a method other than GET/HEAD,
 * and otherwise calls the route. A route that throws gets a 500 and an error log line.
 */
export function routeRequests(routes: ReadonlyMap<string, Route>, logger: Logger): RequestHandler {
  return async (req, res) => {
    let url: URL;
    try {
      // An absolute-form target with a bad host (`GET http://[ HTTP/1.1`) makes URL throw.
      url = new URL(req.url ?? '/', 'http://admin.invalid');
    } catch {
      sendError(res, 400, 'invalid_argument', 'unparseable request target');
      return;
    }
    const route = routes.get(url.pathname);
    if (route === undefined) {
      sendError(res, 404, 'not_found', `no such path: ${url.pathname}`);
      return;
    }
    if (!(READ_METHODS as readonly string[]).includes(req.method ?? '')) {
      sendError(res, 405, 'method_not_allowed', `${req.method ?? '?'} is not allowed here`, {
        allow: READ_METHODS.join(', '),
      });
      return;
    }
    try {
      await route(req, res, url);
    } catch (err) {
      logger.error({ err, path: url.pathname }, 'admin request failed');
      if (!res.headersSent) sendError(res, 500, 'internal', 'internal error; see the server log');
      else res.destroy();
    }
  };
}

/** A bound HTTP server with one close path. */
export interface HttpEndpoint {
  readonly state: HttpEndpointState;
  /** The bound address once listening; the configured one before. */
  readonly address: HostPort;
  start(options?: { signal?: AbortSignal | undefined }): Promise<void>;
  close(options?: { signal?: AbortSignal | undefined }): Promise<void>;
  destroy(): void;
}

/**
 * An HTTP endpoint serving `handler` on `listen`. A bind on a non-loopback address is allowed
 * (the caller asked for it explicitly) but logged as a warning: these ports expose operational
 * data and have no authentication.
 */
export function createHttpEndpoint(options: {
  listen: HostPort;
  logger: Logger;
  handler: RequestHandler;
  what: string;
}): HttpEndpoint {
  const { logger, handler, what } = options;
  let address: HostPort = { ...options.listen };
  let state: HttpEndpointState = 'created';
  let server: Server | undefined;
  let closing: Promise<void> | undefined;

  const transition = (next: HttpEndpointState) => {
    logger.debug({ from: state, to: next }, `${what} state`);
    state = next;
  };

  const endpoint: HttpEndpoint = {
    get state() {
      return state;
    },
    get address() {
      return { ...address };
    },
    async start(startOptions = {}) {
      const { signal } = startOptions;
      if (state !== 'created') {
        throw new AdminError('bad_state', `${what} cannot start: it is ${state}`);
      }
      if (signal?.aborted) throw new AdminError('aborted', `${what} start aborted`);
      transition('starting');
      const srv = createServer((req, res) => {
        if (logger.isLevelEnabled('debug')) {
          const started = performance.now();
          res.once('finish', () => {
            logger.debug(
              {
                method: req.method,
                target: req.url?.slice(0, 200),
                status: res.statusCode,
                durationMs: Math.round((performance.now() - started) * 100) / 100,
              },
              `${what} request`,
            );
          });
        }
        // The handler answers every failure itself; this catch only keeps a bug from becoming
        // an unhandled rejection (which would end the process).
        handler(req, res).catch((err: unknown) => {
          logger.error({ err }, `${what} request handler failed`);
          res.destroy();
        });
      });
      srv.requestTimeout = ADMIN_REQUEST_TIMEOUT_MS;
      srv.headersTimeout = ADMIN_REQUEST_TIMEOUT_MS;
      srv.keepAliveTimeout = ADMIN_KEEP_ALIVE_TIMEOUT_MS;
      srv.on('clientError', (err, socket) => {
        logger.debug({ err }, `${what} client error`);
        if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
        else socket.destroy();
      });
      server = srv;
      try {
        await new Promise<void>((resolve, reject) => {
          const onAbort = () => {
            cleanup();
            srv.close();
            reject(new AdminError('aborted', `${what} start aborted`));
          };
          const onError = (err: Error) => {
            cleanup();
            reject(
              new AdminError(
                'listen_failed',
                `${what} cannot listen on ${formatHostPort(options.listen)}: ${err.message}`,
                { cause: err },
              ),
            );
          };
          const onListening = () => {
            cleanup();
            resolve();
          };
          const cleanup = () => {
            signal?.removeEventListener('abort', onAbort);
            srv.off('error', onError);
            srv.off('listening', onListening);
          };
          signal?.addEventListener('abort', onAbort, { once: true });
          srv.once('error', onError);
          srv.once('listening', onListening);
          srv.listen({ host: options.listen.host, port: options.listen.port });
        });
      } catch (err) {
        transition('closed');
        server = undefined;
        throw err;
      }
      srv.on('error', (err) => logger.error({ err }, `${what} server error`));
      const bound = srv.address();
      if (bound !== null && typeof bound === 'object') {
        address = { host: bound.address, port: bound.port };
      }
      transition('listening');
      if (!isLoopbackHost(address.host)) {
        logger.warn(
          { address: formatHostPort(address) },
          `${what} is bound to a non-loopback address: anyone who can reach it can read it`,
        );
      }
    },
    close(closeOptions = {}) {
      if (closing !== undefined) return closing;
      const srv = server;
      if (srv === undefined || state === 'closed') {
        transition('closed');
        closing = Promise.resolve();
        return closing;
      }
      transition('closing');
      const { signal } = closeOptions;
      closing = new Promise<void>((resolve) => {
        const onAbort = () => srv.closeAllConnections();
        signal?.addEventListener('abort', onAbort, { once: true });
        srv.close(() => {
          signal?.removeEventListener('abort', onAbort);
          transition('closed');
          resolve();
        });
        srv.closeIdleConnections();
        if (signal?.aborted) onAbort();
      });
      return closing;
    },
    destroy() {
      const srv = server;
      if (srv === undefined || state === 'closed') {
        transition('closed');
        return;
      }
      void endpoint.close();
      srv.closeAllConnections();
    },
  };
  return endpoint;
}

/** `host:port`, with brackets around an IPv6 host. */
export function formatHostPort(hp: HostPort): string {
  return formatListenAddress(hp);
}
