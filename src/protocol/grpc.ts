/**
 * gRPC wire facts of persist pubsub shared by the broker and every client: the method path
 * (Materialize's `ProtoPersistPubSub/PubSub`), the request headers, the content type, the
 * length-prefixed message framing and the keepalive defaults both sides use.
 */

/** The reference's service, as gRPC health and reflection name it. */
export const PUBSUB_SERVICE_NAME = 'mz_persist_client.internal.service.ProtoPersistPubSub';
/** The HTTP/2 path of the reference's one method. */
export const PUBSUB_METHOD_PATH = `/${PUBSUB_SERVICE_NAME}/PubSub`;
/** Request header naming the caller (reference; sanitised by `sanitizeCallerId`). */
export const CALLER_ID_HEADER = 'persist-pubsub-caller-id';
/**
 * Request header (value `1`) saying the client understands extension messages: gap notices and
 * subscription refusals. A reference client never sends it and never gets them.
 */
export const EXTENSIONS_HEADER = 'persist-pubsub-extensions';
/** Request header carrying `Bearer <token>` when the broker requires a token. */
export const AUTHORIZATION_HEADER = 'authorization';
/** The content type of a request and a response. */
export const GRPC_CONTENT_TYPE = 'application/grpc';

/** The 5-byte gRPC message prefix: compressed flag (0) and the big-endian uint32 length. */
export const GRPC_FRAME_HEADER_BYTES = 5;

/** Keepalive ping interval of the broker and the gRPC client, in ms. @default 30000 */
export const DEFAULT_KEEPALIVE_TIME_MS = 30_000;
/** A keepalive ping unanswered this long ends the connection, in ms. @default 10000 */
export const DEFAULT_KEEPALIVE_TIMEOUT_MS = 10_000;

/** Largest message either side receives, in bytes (gRPC's default). @default 4 MiB */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** The `authorization` header value for a bearer token. */
export function bearerAuthorization(token: string): string {
  return `Bearer ${token}`;
}

/** The token of an `authorization: Bearer <token>` value, or undefined. */
export function bearerToken(value: unknown): string | undefined {
  if (typeof value !== 'string' || !value.startsWith('Bearer ')) return undefined;
  return value.slice(7).trim();
}

/** Wraps an already-encoded protobuf message in one gRPC frame. */
export function frameMessage(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(GRPC_FRAME_HEADER_BYTES + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, GRPC_FRAME_HEADER_BYTES);
  return out;
}

/** Longest caller id kept; longer ones are cut. */
export const MAX_CALLER_ID_CHARS = 128;

/**
 * Sanitises the `persist-pubsub-caller-id` header for logs and metric labels: keeps
 * `[A-Za-z0-9._:@/-]`, replaces anything else with `_`, cuts at 128 characters; empty or
 * absent → `unknown` (the reference's default).
 */
export function sanitizeCallerId(value: unknown): string {
  const raw = Array.isArray(value) ? value[0] : value;
  if (typeof raw !== 'string' || raw.length === 0) return 'unknown';
  const cut = raw.slice(0, MAX_CALLER_ID_CHARS).replace(/[^A-Za-z0-9._:@/-]/g, '_');
  return cut.length === 0 ? 'unknown' : cut;
}
