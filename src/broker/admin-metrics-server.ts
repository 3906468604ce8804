/**
 * A metrics-only HTTP server for processes that have no HTTP server of their own (the client
 * SDK, examples, bench workers): `GET /metrics` from the given registry and `GET /healthz`.
 * Same plumbing and the same loopback default policy as the broker's admin server; never the
 * prom-client global registry.
 */
import { type Logger, pino } from 'pino';
import type { Registry } from 'prom-client';
import { AdminError } from './admin-errors.js';
import {
  createHttpEndpoint,
  type HttpEndpoint,
  type Route,
  routeRequests,
  sendJson,
  sendText,
  validateListen,
} from './admin-http.js';
import type { HostPort } from './types.js';

export interface MetricsServerOptions {
  /** Metrics served at `/metrics`. Required: a library never uses the global registry. */
  registry: Registry;
  /** Where to listen; port 0 picks a free port (read it from `address`). Loopback is advised. */
  listen: HostPort;
  /** Lifecycle and request errors go here, under `component: 'metrics-server'`. @default silent */
  logger?: Logger | undefined;
}

/** A bound `/metrics` + `/healthz` server: `start()`, `address`, `close()`, `destroy()`. */
export type MetricsServer = HttpEndpoint;

/** Creates the server; validates options now, binds on `start()`. */
export function createMetricsServer(options: MetricsServerOptions): MetricsServer {
  if (typeof options !== 'object' || options === null) {
    throw new AdminError('invalid_argument', 'options must be an object');
  }
  const { registry } = options;
  if (typeof registry?.metrics !== 'function') {
    throw new AdminError('invalid_argument', 'registry must be a prom-client Registry');
  }
  const listen = validateListen(options.listen, 'listen');
  const logger = (options.logger ?? pino({ level: 'silent' })).child({
    component: 'metrics-server',
  });
  const routes = new Map<string, Route>([
    [
      '/metrics',
      async (_req, res) => {
        sendText(res, 200, await registry.metrics(), registry.contentType);
      },
    ],
    [
      '/healthz',
      async (_req, res) => {
        sendJson(res, 200, { status: 'ok' });
      },
    ],
  ]);
  return createHttpEndpoint({
    listen,
    logger,
    handler: routeRequests(routes, logger),
    what: 'metrics server',
  });
}
