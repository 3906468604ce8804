/**
 * The gRPC transport: one bidi `PubSub` stream per connection to the broker, wire-compatible
 * with Materialize's `ProtoPersistPubSub`, written with the same gRPC framing the broker uses
 * (length-prefixed messages, `application/grpc`, status in trailers) on our own HTTP/2 client
 * session (`./h2/`), not `node:http2`: at one message per wake-up its stream machinery cost
 * about a quarter to a third of the client's CPU per message received and per push sent
 * (`npm run bench -- h2-client`).
 *
 * Why not grpc-js: its client completes one write at a time, after the socket took it, so a
 * writer that commits many shards in one turn either waits or drops (the old sender bound,
 * counted in pushes, dropped under CPU load with the socket idle). Here every frame made in one
 * event-loop turn is coalesced into one `write` (flushed in a `setImmediate`; with a write window,
 * `persist_pubsub_client_write_window_us`, a send soon after the last write waits for the
 * window's end and shares its write: `src/util/write-window.ts`), and the sender
 * is bounded by bytes that the wire has not taken yet (`bufferedBytes`, checked against
 * `persist_pubsub_client_sender_buffer_bytes` above the seam): a push is dropped only when that
 * many bytes really wait. Frames are encoded and decoded in one pass by the protocol codec
 * (`src/protocol`), not through protobuf-es reflection.
 *
 * Kept from the grpc-js transport: keepalive pings (`keepaliveTimeMs`, an unanswered ping ends
 * the connection after `keepaliveTimeoutMs`), TLS and mTLS (ALPN h2, `serverName` override),
 * the bearer token, the caller-id and extensions headers, a connection that counts as up only
 * once the broker's HTTP/2 SETTINGS arrived (a TCP listener that never speaks HTTP/2 times out
 * with the caller's attempt signal), a stream that counts as accepted once response headers
 * arrive (or `acceptGraceMs` passes without an error, for servers that send headers with their
 * first message), a trailers-only refusal (e.g. UNAUTHENTICATED) failing the attempt, and
 * a GOAWAY with an error code / RST_STREAM / a non-OK status ending the connection with an
 * error so the reconnect loop takes over. A graceful GOAWAY (NO_ERROR: the broker is draining)
 * leaves the stream open and is reported through `onGoaway`, so the client moves to its next
 * connection before this one ends. Each connection is its own HTTP/2 session, closed when the connection ends:
 * the reconnect loop in `createPubSubClient` owns the backoff.
 */
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import {
  AUTHORIZATION_HEADER,
  bearerAuthorization,
  CALLER_ID_HEADER,
  createFrameDecoder,
  DEFAULT_KEEPALIVE_TIME_MS,
  DEFAULT_KEEPALIVE_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_BYTES,
  EXTENSIONS_HEADER,
  encodePush,
  encodeSubscribe,
  encodeUnsubscribe,
  GRPC_CONTENT_TYPE,
  PUBSUB_METHOD_PATH,
} from '../protocol/index.js';
import { type Clock, createWriteWindow, systemClock, type Timer } from '../util/index.js';
import { ClientError } from './errors.js';
import type { Flags } from './flags.js';
import { describeGrpcAddress, parseGrpcAddress } from './grpc-address.js';
import {
  connectH2,
  ErrorCode,
  type H2Error,
  type H2Headers,
  type H2Session,
  type H2SessionEvents,
  type H2Stream,
  type HeaderField,
} from './h2/index.js';
import { decodeInbound } from './inbound.js';
import type { ConnectOptions, PubSubConnection, PubSubTransport, SendResult } from './transport.js';

export const DEFAULT_ACCEPT_GRACE_MS = 250;

/** TLS for `grpcs://`: PEM contents (not paths). */
export interface GrpcTlsOptions {
  /** CA bundle that signed the broker's certificate. @default the system roots */
  ca?: string | Buffer | undefined;
  /** Client certificate, for mTLS (with `key`). */
  cert?: string | Buffer | undefined;
  /** Client private key, for mTLS (with `cert`). */
  key?: string | Buffer | undefined;
  /** The name to verify the broker's certificate against. @default the URL's host */
  serverName?: string | undefined;
}

export interface GrpcTransportOptions {
  /** `grpc://host:port`, `grpcs://host:port` or a Unix socket (`unix:/path`, `unix:///path`). */
  url: string;
  /** Sent as `persist-pubsub-caller-id`; ASCII. @default 'unknown' */
  callerId?: string | undefined;
  tls?: GrpcTlsOptions | undefined;
  /** Sent as `authorization: Bearer <token>`. */
  authToken?: string | undefined;
  /** Ping the broker this often, in ms. 0 disables. @default 30000 */
  keepaliveTimeMs?: number | undefined;
  /** Drop the connection when a ping is unanswered this long, in ms. @default 10000 */
  keepaliveTimeoutMs?: number | undefined;
  /**
   * How long to wait for the broker's response headers before taking a stream that has not
   * failed as accepted (for servers that send headers only with their first message), in ms.
   * @default 250
   */
  acceptGraceMs?: number | undefined;
  /** Largest message received, in bytes. @default 4 MiB */
  maxMessageBytes?: number | undefined;
  /** Message timestamps, keepalive, accept-grace and write-window timers. @default systemClock */
  clock?: Clock | undefined;
  /**
   * The runtime flags; this transport reads `persist_pubsub_client_write_window_us` at every
   * send (the sender's write window, `src/util/write-window.ts`). @default no window
   */
  flags?: Flags | undefined;
}

const ASCII = /^[\x20-\x7e]*$/;
/** Receive windows: a reader far behind holds up to this much in flight per connection. */
const STREAM_WINDOW_BYTES = 1 << 20;
const SESSION_WINDOW_BYTES = 4 << 20;

function checkMs(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0) {
    throw new ClientError('invalid_argument', `${name} must be an integer >= 0, got ${v}`, {
      field: name,
    });
  }
}

/** A gRPC status from response headers or trailers, if they carry one. */
function grpcStatusOf(headers: H2Headers): { code: number; message: string } | undefined {
  const raw = headers['grpc-status'];
  if (raw === undefined) return undefined;
  const code = Number(raw);
  let message = '';
  const m = headers['grpc-message'];
  if (typeof m === 'string') {
    try {
      message = decodeURIComponent(m);
    } catch {
      message = m;
    }
  }
  return { code: Number.isInteger(code) ? code : 2, message };
}

export function createGrpcTransport(options: GrpcTransportOptions): PubSubTransport {
  const address = parseGrpcAddress(options.url);
  const callerId = options.callerId ?? 'unknown';
  if (!ASCII.test(callerId)) {
    throw new ClientError('invalid_argument', 'callerId must be printable ASCII', {
      field: 'callerId',
    });
  }
  const keepaliveTimeMs = options.keepaliveTimeMs ?? DEFAULT_KEEPALIVE_TIME_MS;
  const keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? DEFAULT_KEEPALIVE_TIMEOUT_MS;
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const acceptGraceMs = options.acceptGraceMs ?? DEFAULT_ACCEPT_GRACE_MS;
  checkMs('acceptGraceMs', acceptGraceMs);
  checkMs('keepaliveTimeMs', keepaliveTimeMs);
  checkMs('keepaliveTimeoutMs', keepaliveTimeoutMs);
  checkMs('maxMessageBytes', maxMessageBytes);
  if (options.authToken !== undefined && !ASCII.test(options.authToken)) {
    throw new ClientError('invalid_argument', 'authToken must be printable ASCII', {
      field: 'authToken',
    });
  }
  const tls = options.tls;
  if (tls !== undefined && !address.tls) {
    throw new ClientError('invalid_argument', 'tls options need a grpcs:// url', { field: 'tls' });
  }
  if (tls !== undefined && (tls.cert === undefined) !== (tls.key === undefined)) {
    throw new ClientError('invalid_argument', 'tls.cert and tls.key go together (mTLS)', {
      field: 'tls',
    });
  }
  // SNI carries a name, never an IP; certificate checks use `servername` when set, else host.
  const serverName =
    tls?.serverName ??
    (address.kind === 'tcp' && isIP(address.host) === 0 ? address.host : undefined);
  const tlsOptions: ConnectionOptions | undefined = address.tls
    ? {
        ...(tls?.ca !== undefined ? { ca: tls.ca } : {}),
        ...(tls?.cert !== undefined ? { cert: tls.cert, key: tls.key } : {}),
        ...(serverName !== undefined ? { servername: serverName } : {}),
      }
    : undefined;
  const requestHeaders: HeaderField[] = [
    [':method', 'POST'],
    [':scheme', address.tls ? 'https' : 'http'],
    [':path', PUBSUB_METHOD_PATH],
    [':authority', address.target],
    ['content-type', GRPC_CONTENT_TYPE],
    ['te', 'trailers'],
    ['user-agent', 'persist-pubsub-node'],
    ['grpc-accept-encoding', 'identity'],
    [CALLER_ID_HEADER, callerId],
    [EXTENSIONS_HEADER, '1'],
    ...(options.authToken !== undefined
      ? [[AUTHORIZATION_HEADER, bearerAuthorization(options.authToken)] as const]
      : []),
  ];
  const clock = options.clock ?? systemClock;
  const flags = options.flags;
  const writeWindowUs = (): number => flags?.get().persist_pubsub_client_write_window_us ?? 0;
  const now = (): number => clock.nowMs();
  const unreachable = (why: string, cause?: unknown): ClientError =>
    new ClientError('unavailable', `broker ${describeGrpcAddress(address)} unreachable (${why})`, {
      cause,
    });

  /**
   * Resolves once the broker's SETTINGS arrived: the HTTP/2 connection is up. `events` is the
   * session's, for the connection to take over: until it does, a GOAWAY or a close only makes
   * the stream's `request` fail.
   */
  const openSession = (
    signal: AbortSignal,
  ): Promise<{ session: H2Session; events: H2SessionEvents }> =>
    new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err: Error | undefined): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        if (err === undefined) {
          resolve({ session, events });
        } else {
          session.destroy();
          reject(err);
        }
      };
      const events: H2SessionEvents = {
        onConnect: () => settle(undefined),
        onGoaway: () => {},
        onClose: (err) => settle(unreachable(err?.message ?? 'connection closed', err)),
      };
      const onAbort = (): void => settle(signal.reason as Error);
      const session = connectH2(
        {
          ...(address.kind === 'unix'
            ? { path: address.path }
            : { host: address.host, port: address.port }),
          tls: tlsOptions,
          streamWindowBytes: STREAM_WINDOW_BYTES,
          connectionWindowBytes: SESSION_WINDOW_BYTES,
        },
        events,
      );
      signal.addEventListener('abort', onAbort, { once: true });
    });

  return {
    kind: 'grpc',
    async connect({
      signal,
      onMessage,
      onClose,
      onGoaway,
    }: ConnectOptions): Promise<PubSubConnection> {
      signal.throwIfAborted();
      const { session, events } = await openSession(signal);

      /**
       * `accepting`: waiting for response headers (failures reject the attempt); `open`:
       * connected (failures go to `onClose`); `closed`: ended, nothing more is delivered.
       */
      let state = 'accepting' as 'accepting' | 'open' | 'closed';
      // (A function, so that TypeScript does not narrow `state` across the awaits below.)
      const closed = (): boolean => state === 'closed';
      let acceptWait: ((err: Error | undefined) => void) | undefined;
      let trailerStatus: { code: number; message: string } | undefined;
      /** A graceful GOAWAY arrived: reported once the connection is open. */
      let goaway = false;
      let pingTimer: Timer | undefined;
      let pongTimer: Timer | undefined;
      // Frames made this turn (or within the write window), written together by one
      // `setImmediate` (or at the window's end).
      let queued: Buffer[] = [];
      let queuedBytes = 0;
      let flushTimer: NodeJS.Immediate | undefined;
      const window = createWriteWindow({
        windowUs: writeWindowUs,
        clock,
        soon: () => {
          flushTimer ??= setImmediate(flush);
        },
        flush: () => flush(),
      });

      const teardown = (): void => {
        pingTimer?.cancel();
        pongTimer?.cancel();
        if (flushTimer !== undefined) clearImmediate(flushTimer);
        flushTimer = undefined;
        window.cancel();
        queued = [];
        queuedBytes = 0;
        stream.close(ErrorCode.CANCEL);
        session.destroy();
      };
      /** The connection ended (by the peer, the network or a protocol error). */
      const finish = (err: Error | undefined): void => {
        if (state === 'closed') return;
        const wasOpen = state === 'open';
        state = 'closed';
        teardown();
        if (wasOpen) onClose(err);
        else
          acceptWait?.(
            err ??
              new ClientError('unavailable', 'the broker ended the stream before accepting it'),
          );
      };
      const streamFailed = (why: string, cause?: unknown): ClientError =>
        new ClientError('unavailable', `pubsub stream failed: ${why}`, { cause });

      const decoder = createFrameDecoder(maxMessageBytes);
      const onFrame = (message: Buffer): void => {
        if (state === 'open') onMessage(decodeInbound(message));
      };
      /** The response's first header block seen; later ones are trailers. */
      let responded = false;
      const onResponse = (headers: H2Headers): void => {
        const status = Number(headers[':status']);
        const refusal = grpcStatusOf(headers);
        if (status !== 200) {
          finish(streamFailed(`HTTP status ${String(status)}`));
        } else if (refusal !== undefined) {
          // Trailers-only: the broker refused or ended the call at once.
          trailerStatus = refusal;
        } else {
          acceptWait?.(undefined);
        }
      };
      // The response ends with the status (trailers, or trailers-only); our half of the stream
      // is still open then: the call is over at the peer's end of stream.
      const ended = (): void => {
        const st = trailerStatus;
        if (st !== undefined && st.code === 0) finish(undefined);
        else if (st !== undefined) finish(streamFailed(`${st.code} ${st.message}`));
        else finish(streamFailed('stream ended without a status'));
      };
      let stream: H2Stream;
      try {
        stream = session.request(requestHeaders, {
          onHeaders(headers) {
            if (state === 'closed') return;
            if (!responded) {
              responded = true;
              onResponse(headers);
            } else {
              trailerStatus = grpcStatusOf(headers) ?? {
                code: 2,
                message: 'trailers without a status',
              };
            }
          },
          onData(chunk) {
            if (state === 'closed') return;
            const bad = decoder.push(chunk, onFrame);
            if (bad !== undefined) finish(streamFailed(`bad frame from the broker (${bad.code})`));
          },
          onEnd: ended,
          onReset: (code) => finish(streamFailed(`stream reset (HTTP/2 code ${code})`)),
        });
      } catch (err) {
        session.destroy();
        throw unreachable('cannot open the PubSub stream', err);
      }
      events.onClose = (err: H2Error | undefined) =>
        finish(streamFailed(err?.message ?? 'connection closed', err));
      events.onGoaway = (code: number) => {
        // Non-zero codes are errors. NO_ERROR: the broker is draining; our stream runs on
        // until it ends it, and the client moves to a new connection meanwhile.
        if (code !== ErrorCode.NO_ERROR) finish(streamFailed(`GOAWAY (HTTP/2 code ${code})`));
        else if (!goaway && state !== 'closed') {
          goaway = true;
          if (state === 'open') onGoaway?.();
        }
      };

      const schedulePing = (): void => {
        if (keepaliveTimeMs === 0 || state === 'closed') return;
        pingTimer = clock.setTimer(() => {
          if (state === 'closed') return;
          pongTimer = clock.setTimer(
            () => finish(streamFailed(`keepalive ping unanswered after ${keepaliveTimeoutMs} ms`)),
            keepaliveTimeoutMs,
          );
          session.ping(() => {
            pongTimer?.cancel();
            schedulePing();
          });
        }, keepaliveTimeMs);
      };
      schedulePing();

      try {
        await new Promise<void>((resolve, reject) => {
          const timer = clock.setTimer(() => settle(undefined), acceptGraceMs);
          const onAbort = (): void => settle(signal.reason as Error);
          function settle(err: Error | undefined): void {
            timer.cancel();
            signal.removeEventListener('abort', onAbort);
            if (acceptWait === undefined) return;
            acceptWait = undefined;
            if (err === undefined) resolve();
            else reject(err);
          }
          acceptWait = settle;
          signal.addEventListener('abort', onAbort, { once: true });
        });
      } catch (err) {
        if (!closed()) {
          state = 'closed';
          teardown();
        }
        throw err;
      }
      if (closed()) throw streamFailed('ended while connecting');
      state = 'open';
      // After the caller has the connection: `onGoaway` is never called inside `connect`.
      if (goaway) queueMicrotask(() => state === 'open' && onGoaway?.());

      function flush(): void {
        if (flushTimer !== undefined) clearImmediate(flushTimer);
        flushTimer = undefined;
        if (state !== 'open' || queued.length === 0) return;
        const buf =
          queued.length === 1 ? (queued[0] as Buffer) : Buffer.concat(queued, queuedBytes);
        queued = [];
        queuedBytes = 0;
        stream.write(buf);
        window.wrote();
      }
      const send = (frame: Buffer): SendResult => {
        if (state !== 'open') return false;
        queued.push(frame);
        queuedBytes += frame.length;
        window.request();
        return frame.length;
      };
      return {
        subscribe: (shardId, resumeAfterSeqno) =>
          send(encodeSubscribe(shardId, resumeAfterSeqno, now(), true)),
        unsubscribe: (shardId) => send(encodeUnsubscribe(shardId, now(), true)),
        push: (shardId, seqno, diff, originTimestampMs) =>
          send(encodePush(shardId, seqno, diff, originTimestampMs, now(), true)),
        bufferedBytes: () => queuedBytes + stream.bufferedBytes,
        close() {
          if (state === 'closed') return;
          state = 'closed';
          teardown();
        },
      };
    },
  };
}
