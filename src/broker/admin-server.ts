/**
 * The broker's admin HTTP server (issue 3, "Admin HTTP" and "Health"): Prometheus metrics from
 * the broker's own registry, liveness and readiness probes, and paginated JSON listings of
 * shards and connections. It only reads the broker; it knows nothing of gRPC.
 *
 *   GET /metrics                         Prometheus text format (`registry.contentType`)
 *   GET /healthz                         200 while the process serves HTTP at all (liveness)
 *   GET /readyz                          200 while `broker.isReady()` and not draining, else 503
 *   GET /v1/shards?page_size=&page_token=       {"shards": [...], "next_page_token"?}
 *   GET /v1/connections?page_size=&page_token=  {"connections": [...], "next_page_token"?}
 *
 * Listings carry the AIP "soft" guarantees of Consensus `listKeys` (docs/architecture.md
 * "Consensus semantics"): every item that exists for the whole listing appears at least once,
 * order is not guaranteed, an item may repeat across pages and a page may be empty while a
 * token is still returned. No `next_page_token` means the listing is done. JSON field names
 * are snake_case, like the query parameters. Errors are `{"error": {"code", "message"}}`: 400
 * for a bad query parameter or page token, 404 for an unknown path, 405 (with `Allow`) for a
 * method other than GET or HEAD.
 *
 * Binds 127.0.0.1:6880 by default; this port has no authentication, so a non-loopback bind is
 * logged as a warning.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Logger, pino } from 'pino';
import { AdminError } from './admin-errors.js';
import {
  createHttpEndpoint,
  type HttpEndpointState,
  type Route,
  routeRequests,
  sendError,
  sendJson,
  sendText,
  validateListen,
} from './admin-http.js';
import { parsePageQuery } from './admin-page-query.js';
import type { Broker, ConnectionInfo, HostPort, Page, PageRequest, ShardInfo } from './types.js';

/** The admin port's default address: loopback only. */
export const DEFAULT_ADMIN_LISTEN: Readonly<HostPort> = Object.freeze({
  host: '127.0.0.1',
  port: 6880,
});

/** What the admin server reads from a broker. */
export type AdminBroker = Pick<Broker, 'registry' | 'isReady' | 'listShards' | 'listConnections'>;

export interface AdminServerOptions {
  /** The broker whose metrics, readiness and listings are served. */
  broker: AdminBroker;
  /** Where to listen; port 0 picks a free port (read it from `address`). @default 127.0.0.1:6880 */
  listen?: HostPort | undefined;
  /** Request errors and lifecycle go here, under `component: 'admin'`. @default silent */
  logger?: Logger | undefined;
}

export interface AdminServer {
  readonly state: HttpEndpointState;
  /** The bound address once started; the configured one before. */
  readonly address: HostPort;
  /** Binds the port. Rejects with `AdminError` (`listen_failed`, `aborted`, `bad_state`). */
  start(options?: { signal?: AbortSignal | undefined }): Promise<void>;
  /**
   * From now on `/readyz` answers 503 whatever the broker says. Called the moment a drain
   * begins, so load balancers stop sending before the broker stops accepting. Idempotent.
   */
  markDraining(): void;
  /** Stops accepting and waits for in-flight requests; an abort destroys the rest. Idempotent. */
  close(options?: { signal?: AbortSignal | undefined }): Promise<void>;
  /** Closes every connection at once. */
  destroy(): void;
}

/** The JSON shape of one shard in `/v1/shards`. */
export interface ShardJson {
  shard_id: string;
  subscribers: number;
  last_seqno?: string;
}

/** The JSON shape of one connection in `/v1/connections`. */
export interface ConnectionJson {
  conn_id: string;
  caller_id: string;
  remote_address: string;
  connected_at_ms: number;
  subscriptions: number;
  queue_messages: number;
  queue_bytes: number;
  dropped: number;
}

function shardJson(s: ShardInfo): ShardJson {
  const out: ShardJson = { shard_id: s.shardId, subscribers: s.subscribers };
  if (s.lastSeqno !== undefined) out.last_seqno = s.lastSeqno;
  return out;
}

function connectionJson(c: ConnectionInfo): ConnectionJson {
  return {
    conn_id: c.connId,
    caller_id: c.callerId,
    remote_address: c.remoteAddress,
    connected_at_ms: c.connectedAtMs,
    subscriptions: c.subscriptions,
    queue_messages: c.queueMessages,
    queue_bytes: c.queueBytes,
    dropped: c.dropped,
  };
}

/** A listing call rejected its input (e.g. a stale or forged page token): the caller's fault. */
function isInvalidArgument(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  return code === 'invalid_argument' || code === 'INVALID_ARGUMENT' || code === 3;
}

function listRoute<T, J>(
  key: string,
  list: (request: PageRequest) => Page<T>,
  toJson: (item: T) => J,
): Route {
  return async (_req: IncomingMessage, res: ServerResponse, url: URL) => {
    const parsed = parsePageQuery(url.searchParams);
    if (!parsed.ok) {
      sendError(res, 400, 'invalid_argument', parsed.message);
      return;
    }
    let page: Page<T>;
    try {
      page = list(parsed.request);
    } catch (err) {
      if (isInvalidArgument(err)) {
        // A token from another listing, an old broker or a hand: `page_token` is the culprit.
        const why = err instanceof Error ? err.message : 'invalid';
        sendError(res, 400, 'invalid_argument', `page_token rejected: ${why}`);
        return;
      }
      throw err;
    }
    const body: Record<string, unknown> = { [key]: page.items.map(toJson) };
    if (page.nextPageToken !== undefined && page.nextPageToken !== '') {
      body.next_page_token = page.nextPageToken;
    }
    sendJson(res, 200, body);
  };
}

/** Creates the admin server; validates options now, binds on `start()`. */
export function createAdminServer(options: AdminServerOptions): AdminServer {
  if (typeof options !== 'object' || options === null) {
    throw new AdminError('invalid_argument', 'options must be an object');
  }
  const { broker } = options;
  if (
    typeof broker !== 'object' ||
    broker === null ||
    typeof broker.isReady !== 'function' ||
    typeof broker.listShards !== 'function' ||
    typeof broker.listConnections !== 'function' ||
    typeof broker.registry?.metrics !== 'function'
  ) {
    throw new AdminError(
      'invalid_argument',
      'broker must have registry, isReady(), listShards() and listConnections()',
    );
  }
  const listen = validateListen(options.listen ?? DEFAULT_ADMIN_LISTEN, 'listen');
  const logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'admin' });
  let draining = false;

  const routes = new Map<string, Route>([
    [
      '/metrics',
      async (_req, res) => {
        const text = await broker.registry.metrics();
        sendText(res, 200, text, broker.registry.contentType);
      },
    ],
    [
      '/healthz',
      async (_req, res) => {
        sendJson(res, 200, { status: 'ok' });
      },
    ],
    [
      '/readyz',
      async (_req, res) => {
        if (draining) sendJson(res, 503, { status: 'not_ready', reason: 'draining' });
        else if (!broker.isReady()) sendJson(res, 503, { status: 'not_ready', reason: 'broker' });
        else sendJson(res, 200, { status: 'ready' });
      },
    ],
    ['/v1/shards', listRoute('shards', (r) => broker.listShards(r), shardJson)],
    ['/v1/connections', listRoute('connections', (r) => broker.listConnections(r), connectionJson)],
  ]);

  const endpoint = createHttpEndpoint({
    listen,
    logger,
    handler: routeRequests(routes, logger),
    what: 'admin server',
  });

  return {
    get state() {
      return endpoint.state;
    },
    get address() {
      return endpoint.address;
    },
    start: (o) => endpoint.start(o),
    markDraining() {
      if (!draining) logger.info('draining: /readyz now answers 503');
      draining = true;
    },
    close: (o) => endpoint.close(o),
    destroy: () => endpoint.destroy(),
  };
}
