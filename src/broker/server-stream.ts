/**
 * The HTTP/2 server surface the broker's gRPC calls use, and nothing more: one request stream
 * (its headers, the gRPC response written as frames, the trailers, a reset, and the peer's
 * data, half-close and the stream's close) and its session (ping, GOAWAY, close, the peer's
 * address). Two implementations, chosen by `BrokerOptions.http2Server` (`--http2-server`):
 * - `own` (`h2-server-session.ts`, `own-h2-server.ts`): our HTTP/2 framing on `net`, plain
 *   sockets read with `onread`, the frames and HPACK of `src/protocol/h2`;
 * - `node` (`node-h2-server.ts`): `node:http2` behind this interface; it also serves TLS (ALPN
 *   h2, mTLS) for either choice.
 * Handlers (`pubsub-stream.ts`, `health.ts`, `reflection.ts`) see only this file's types.
 */
import type { CallStatus } from './grpc-status.js';
import type { FrameSource } from './outbound.js';

/** Which HTTP/2 server implementation serves plain gRPC (TCP or Unix socket; not TLS). */
export type Http2ServerKind = 'own' | 'node';
export const HTTP2_SERVER_KINDS: readonly Http2ServerKind[] = ['own', 'node'];

/** What a session reports as its peer (`ServerSession.remoteAddress` and `remotePort`). */
export interface Peer {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
}

/**
 * The peer of an accepted socket, for logs and connection listings. A Unix socket's peer has no
 * address: it is reported as `unix` with the socket's file descriptor as its "port", unique among
 * the open connections, so that listings tell such peers apart. Nothing keys on it: the
 * handshake timeout keeps its deadlines by session (`grpc-server.ts`).
 */
export function peerOf(socket: {
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
}): Peer {
  if (socket.remoteAddress !== undefined) {
    return { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort };
  }
  // libuv's handle (Node's own, not public): `Pipe` for a Unix socket, its `fd` the descriptor.
  const handle = (socket as { _handle?: { fd?: unknown; constructor?: { name?: string } } | null })
    ._handle;
  const fd = typeof handle?.fd === 'number' && handle.fd >= 0 ? handle.fd : undefined;
  return {
    remoteAddress: handle?.constructor?.name === 'Pipe' ? 'unix' : undefined,
    remotePort: fd,
  };
}

/** Request headers, pseudo-headers (`:path`, `:method`) included; repeated ones joined by ", ". */
export type RequestHeaders = Readonly<Record<string, string | undefined>>;

/** What a handler hears of its stream; set once, right when the handler gets it. */
export interface ServerStreamEvents {
  /** A piece of the request body, in order; the chunk is the handler's to keep. */
  data?(chunk: Buffer): void;
  /** The peer half-closed (END_STREAM). Never called for a reset or a lost connection. */
  end?(): void;
  /** `write` returned false earlier and the stream takes writes again. */
  drain?(): void;
}

export interface ServerStream {
  readonly session: ServerSession;
  readonly headers: RequestHeaders;
  /** The response headers (or a whole trailers-only response) went out. */
  readonly headersSent: boolean;
  /** `end` was called or the response was trailers-only: nothing more is written. */
  readonly ended: boolean;
  /** Closed (both sides done, reset, or its connection gone). */
  readonly closed: boolean;
  /** Bytes written and not yet taken by the kernel (waiting for flow-control window, or in the socket). */
  readonly bufferedBytes: number;
  listen(events: ServerStreamEvents): void;
  /** `cb` runs once when the stream closes (at once if it already has). */
  onClose(cb: () => void): void;
  /** `:status 200`, `content-type: application/grpc`; the trailers follow at `end`. */
  sendHeaders(): void;
  /** One HEADERS frame with END_STREAM: status and trailers, no message. Never throws. */
  respondTrailersOnly(status: CallStatus): void;
  /** A non-gRPC HTTP answer with no body (415 for a wrong content type). */
  respondHttpStatus(status: number): void;
  /** Writes one gRPC frame. False: buffers are full, wait for `drain`. */
  write(frame: Buffer): boolean;
  /**
   * Writes several gRPC frames in one socket write (each copied by its source where the
   * implementation copies, else taken as its `frame`). False: wait for `drain`.
   */
  writeFrames(items: readonly FrameSource[]): boolean;
  /** Writes `last` (if given), then the trailers of `status`, after everything written before. */
  end(status: CallStatus, last?: Buffer): void;
  /** RST_STREAM with an HTTP/2 error code (RFC 9113 §7); idempotent. */
  reset(code: number): void;
}

export interface ServerSession {
  /** The peer's address, kept from the connection's start. */
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** GOAWAY sent (no new streams), or destroyed. */
  readonly closed: boolean;
  readonly destroyed: boolean;
  /** Sends a PING; `cb` runs at its ACK, or with an error if the session ends first. */
  ping(cb: (err: Error | null) => void): boolean;
  /** GOAWAY: no new streams; the open ones run on, and the connection ends after the last. */
  goAway(): void;
  /** Cuts the connection at once. */
  destroy(): void;
  /** `cb` runs once when the session has closed. */
  onClose(cb: () => void): void;
}

/** The HTTP/2 settings the broker serves with (either implementation). */
export interface H2ServerSettings {
  /** SETTINGS_INITIAL_WINDOW_SIZE: the peer's send window per stream, in bytes. */
  streamWindowBytes: number;
  /** The session's receive window (raised from 65,535 at the start), in bytes. */
  connectionWindowBytes: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS. */
  maxConcurrentStreams: number;
}

/** What an implementation reports to the gRPC server (`grpc-server.ts`). */
export interface H2ServerEvents {
  /** A TCP connection arrived, before any HTTP/2; the callee may destroy it (a limit). */
  onConnection(socket: import('node:net').Socket): void;
  /** A new HTTP/2 session; called once per session. */
  onSession(session: ServerSession): void;
  /** A new request stream. */
  onStream(stream: ServerStream): void;
}
