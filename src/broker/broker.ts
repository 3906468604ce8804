/**
 * `createBroker()`: the persist pubsub broker's data plane, a gRPC server speaking
 * `mz_persist_client.internal.service.ProtoPersistPubSub/PubSub` (wire-compatible with
 * Materialize's server) and `grpc.health.v1.Health`, plus same-process connections.
 *
 * ## Stack, chosen by measurement
 * grpc-js costs tens of µs of per-message work (≈ 17k msgs/s bidi echo on 2 cores here), while
 * a raw `node:http2` write costs ≈ 2 µs and several gRPC messages can share one write. The
 * target (≥ 200k delivered diffs/s on one core at fan-out 10) leaves ≈ 5 µs per delivery, so
 * the server is `node:http2` with our own gRPC framing:
 * - requests: `POST`, `content-type: application/grpc[+proto]`; anything else is refused
 *   (HTTP 415, or a trailers-only UNIMPLEMENTED for an unknown path). `grpc-encoding` other
 *   than identity: a compressed message ends the call with UNIMPLEMENTED (we advertise
 *   `grpc-accept-encoding: identity`). `grpc-timeout` is ignored: a pubsub call lives as long
 *   as its connection.
 * - the envelope of each inbound message is decoded once by the protocol codec; a push keeps its
 *   raw `push_diff` bytes, which are forwarded verbatim (extension fields included) behind a
 *   fresh broker timestamp. That frame is encoded once per broadcast and the same Buffer goes
 *   to every subscriber (`fanout.ts`).
 * - writes are coalesced per connection per event-loop turn (one `write` of a concatenation);
 *   `write()` returning false (HTTP/2 flow control or socket backpressure) stops writes to that
 *   stream until 'drain'; meanwhile its bounded queue fills and then drops (counted, gap notice).
 * Measured here (`npm run bench -- broker [--server grpc-js]`: broker alone in one process,
 * raw-http2 publisher and subscribers in others, 256 B diffs, on 2 cores shared with other
 * work at load average 15-20, so tails are inflated; CPU per delivery is the robust figure):
 * - fan-out 10 at 200k delivered diffs/s: 100% delivered in every run, broker at 26-41% of
 *   one core (1.3-2.1 CPU-s per million deliveries), 97-99% of its flushes written within
 *   1 ms of receipt; p50 0.5-0.7 ms; p99 8 ms in the quietest run, 28-160 ms in others, where
 *   the broker's own event loop was descheduled for 15-270 ms by the machine's other load.
 *   300k/s: 100% delivered in two runs of three; 400k/s: 97-99% (drops on full queues).
 * - fan-out 100 up to 400k/s: 100% delivered, p50 ≈ 1-3.5 ms, broker ≤ 58% of a core.
 * - fan-out 1 (per-push cost): 3.8-7.8 CPU-s per million; 100k pushes/s at 47% of a core.
 * - the same fan-out on grpc-js with pass-through serializers and our parser, same clients:
 *   at fan-out 10 and 200k/s 3.5 CPU-s per million (71% of a core) against ours 1.2 (25%);
 *   at 50-100k/s 4.0-5.3 against 2.6-4.5; at fan-out 1 (per-push cost) 9.9 against 6.7-8.9.
 * - RSS: 63 MiB idle, 127 MiB with 10k shards × 1k HTTP/2 connections × 100k subscriptions,
 *   167 MiB after one push per shard (resume rings filled).
 * - A BigInt comparison is a V8 runtime call (~330 ns): none on the per-push path.
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
 * TLS via `http2.createSecureServer` (ALPN h2), optional mTLS (`tls.clientCa`: client
 * certificates are required and verified; a wrong CA fails the handshake), optional bearer
 * token (`authorization: Bearer <token>`, compared in constant time; missing or wrong →
 * UNAUTHENTICATED). Health and reflection (`reflection.ts`) calls are exempt from the token.
 *
 * ## Lifecycle
 * `start()` binds; `close({ deadlineMs })` drains: health turns NOT_SERVING, the listener stops
 * accepting, every session gets GOAWAY (no new streams), and streams still open at the deadline
 * end with UNAVAILABLE; `destroy()` is immediate. Keepalive pings find dead peers; an optional
 * max connection age (±10% jitter) ends a session's streams with UNAVAILABLE after GOAWAY so
 * clients reconnect elsewhere. Server reflection (`reflection.ts`) is on unless `reflection: false`.
 */

import { createHash, timingSafeEqual } from 'node:crypto';
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
import {
  bearerToken,
  CALLER_ID_HEADER,
  createFrameDecoder,
  decodeMessage,
  EXTENSIONS_HEADER,
  encodePushDiff,
  isSeqno,
  PUBSUB_METHOD_PATH,
  parseShardId,
  sanitizeCallerId,
} from '../protocol/index.js';
import { observeFanout, validateObserver } from './bridge-observer.js';
import { Connection, type ConnectionSink } from './connection.js';
import { BrokerError } from './errors.js';
import { createFanoutCore, type FanoutCore } from './fanout.js';
import {
  isGrpcContentType,
  respondTrailersOnly,
  rstCodeFor,
  startResponse,
} from './grpc-respond.js';
import { type CallStatus, GrpcStatus, statusName } from './grpc-status.js';
import {
  createHealthService,
  HEALTH_CHECK_PATH,
  HEALTH_LIST_PATH,
  HEALTH_WATCH_PATH,
} from './health.js';
import { createBrokerMetrics, type RejectReason } from './metrics.js';
import { DEFAULT_DRAIN_DEADLINE_MS, resolveBrokerOptions } from './options.js';
import type { OutItem } from './outbound.js';
import { smallestAfter } from './page-select.js';
import { createReflectionService } from './reflection.js';
import type {
  Broker,
  BrokerFlags,
  BrokerOptions,
  BrokerState,
  ConnectionInfo,
  HostPort,
  InProcessConnection,
  InProcessConnectOptions,
  Page,
  PageRequest,
  ShardInfo,
} from './types.js';

/** A stream that was asked to end gracefully is reset if its peer has not taken the trailers by then, in ms. */
const END_GRACE_MS = 5_000;
const DEFAULT_PAGE_SIZE = 100;
/** HTTP/2 receive window per stream and per session, in bytes. */
const STREAM_WINDOW_BYTES = 256 * 1024;
const SESSION_WINDOW_BYTES = 1024 * 1024;
const MAX_PAGE_SIZE = 1000;

/** Creates a broker (not yet listening: call `start()`). Validates `options` at once. */
export function createBroker(options: BrokerOptions = {}): Broker {
  const o = resolveBrokerOptions(options);
  const { limits, registry, now } = o;
  const log: Logger = o.logger.child({ component: 'broker' });
  const flags: BrokerFlags = { ...o.flags };
  let state: BrokerState = 'starting';
  let server: Http2Server | Http2SecureServer | undefined;
  let bound: HostPort = { ...o.listen };
  let closing: Promise<void> | undefined;
  let connSeq = 0;
  const sessions = new Map<Http2Session, Set<Connection>>();
  /**
   * Raw sockets, to cut at the end of a drain: `Http2Session.destroy()` ends its socket
   * gracefully and waits for the peer, which a peer that stopped reading never allows.
   */
  const sockets = new Set<Socket>();
  const tokenDigest =
    o.authToken === undefined ? undefined : createHash('sha256').update(o.authToken).digest();

  let core: FanoutCore | undefined;
  const metrics = createBrokerMetrics(
    registry,
    {
      activeConnections: () => core?.connections.size ?? 0,
      shards: () => core?.table.shardCount ?? 0,
      subscriptions: () => core?.table.subscriptionCount ?? 0,
      queuedMessages: () => core?.queued().messages ?? 0,
      queuedBytes: () => core?.queued().bytes ?? 0,
      resumeRingBytes: () => core?.resume.totalBytes ?? 0,
    },
    o.maxCallerIdLabels,
  );
  const fan = observeFanout(
    createFanoutCore({ limits, flags, metrics, now }),
    validateObserver(options.observer),
    log,
  );
  core = fan;
  const health = createHealthService(() => state === 'serving');
  const reflection = o.reflection ? createReflectionService() : undefined;

  function reject(stream: ServerHttp2Stream, reason: RejectReason, status: CallStatus): void {
    metrics.rejected(reason);
    log.debug({ reason, status: statusName(status.code), detail: status.message }, 'call rejected');
    respondTrailersOnly(stream, status);
  }

  function authorized(headers: IncomingHttpHeaders): boolean {
    if (tokenDigest === undefined) return true;
    const token = bearerToken(headers.authorization);
    if (token === undefined) return false;
    const given = createHash('sha256').update(token).digest();
    return timingSafeEqual(given, tokenDigest);
  }

  function newConnection(
    kind: 'grpc' | 'local',
    callerId: string,
    remoteAddress: string,
    sink: ConnectionSink,
    extensions: boolean,
  ): Connection {
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
    conn.log.debug({ kind, remoteAddress, extensions }, 'connection opened');
    return conn;
  }

  // ------------------------------------------------------------------------------------------
  // gRPC PubSub streams

  function grpcSink(stream: ServerHttp2Stream, connRef: { conn?: Connection }): ConnectionSink {
    return {
      write(items: OutItem[]): boolean {
        if (stream.destroyed || stream.writableEnded) return true;
        if (items.length === 1) return stream.write(items[0]!.frame);
        let total = 0;
        for (const it of items) total += it.frame.length;
        const buf = Buffer.allocUnsafe(total);
        let pos = 0;
        for (const it of items) {
          const f = it.frame;
          f.copy(buf, pos);
          pos += f.length;
        }
        return stream.write(buf);
      },
      end() {
        if (stream.destroyed) return;
        stream.end();
        // A peer that does not read never takes the trailers: reset it after a grace period.
        const t = setTimeout(() => {
          if (!stream.destroyed && !stream.closed) {
            stream.close(rstCodeFor(connRef.conn?.status?.code ?? GrpcStatus.CANCELLED));
          }
        }, END_GRACE_MS);
        t.unref();
        stream.once('close', () => clearTimeout(t));
      },
      abort(status) {
        if (!stream.destroyed && !stream.closed) stream.close(rstCodeFor(status.code));
      },
    };
  }

  function onPubSubStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    if (!authorized(headers)) {
      reject(stream, 'unauthenticated', {
        code: GrpcStatus.UNAUTHENTICATED,
        message: 'missing or wrong bearer token',
      });
      return;
    }
    if (state !== 'serving') {
      reject(stream, 'draining', {
        code: GrpcStatus.UNAVAILABLE,
        message: 'broker is not serving',
      });
      return;
    }
    if (fan.connections.size >= limits.maxConnections) {
      reject(stream, 'connections', {
        code: GrpcStatus.RESOURCE_EXHAUSTED,
        message: `too many connections (limit ${limits.maxConnections})`,
      });
      return;
    }
    const session = stream.session;
    const callerId = sanitizeCallerId(headers[CALLER_ID_HEADER]);
    const socket = session?.socket;
    const remoteAddress =
      socket?.remoteAddress === undefined
        ? 'unknown'
        : `${socket.remoteAddress}:${socket.remotePort}`;
    const connRef: { conn?: Connection } = {};
    const conn = newConnection(
      'grpc',
      callerId,
      remoteAddress,
      grpcSink(stream, connRef),
      headers[EXTENSIONS_HEADER] === '1',
    );
    connRef.conn = conn;
    if (session !== undefined) sessions.get(session)?.add(conn);
    startResponse(stream, () => conn.status ?? { code: GrpcStatus.OK, message: '' });

    const fail = (reason: RejectReason | undefined, status: CallStatus): void => {
      if (reason !== undefined) metrics.rejected(reason);
      conn.log.debug({ reason, detail: status.message }, 'ending connection: bad input');
      fan.end(conn, status, 'end');
    };
    const decoder = createFrameDecoder(limits.maxMessageBytes);
    const onMessage = (message: Buffer): void => {
      if (conn.state !== 'open') return;
      const env = decodeMessage(message);
      if (env.kind === 'error') {
        metrics.parseError(env.code);
        fail('malformed', {
          code: GrpcStatus.INVALID_ARGUMENT,
          message: `malformed ProtoPubSubMessage (${env.code}): ${env.detail}`,
        });
        return;
      }
      // Notices a client sent are meaningless to the broker: ignored.
      if (env.kind === 'empty' || env.kind === 'gap' || env.kind === 'refused') return;
      const id = parseShardId(env.shardId, limits.maxShardIdBytes);
      if (!id.ok) {
        // A client that speaks extensions loses only this shard: a refusal notice for a
        // subscribe or push, nothing for an unsubscribe. A reference client cannot be told,
        // so its stream ends, as before (its ids are `s` + UUID: it never gets here).
        if (conn.extensions) {
          metrics.rejected(id.reason);
          conn.log.debug({ reason: id.reason, detail: id.detail }, 'refused a shard id');
          // Echo the id as the client wrote it (the codec hands it over as latin1).
          const asSent = Buffer.from(env.shardId, 'latin1').toString('utf8');
          if (env.kind !== 'unsubscribe') {
            fan.refuse(conn, asSent, 'invalid_shard_id', id.detail);
          }
          return;
        }
        fail(id.reason, { code: GrpcStatus.INVALID_ARGUMENT, message: id.detail });
        return;
      }
      if (env.kind === 'push') {
        fan.push(conn, id.shardId, env.seqno, env.pushDiff);
      } else if (env.kind === 'subscribe') {
        const refused = fan.subscribe(conn, id.shardId, env.resumeAfterSeqno);
        // Counted by the core already.
        if (refused === undefined) return;
        if (conn.extensions) fan.refuse(conn, id.shardId, 'subscription_limit', refused.message);
        else fail(undefined, refused);
      } else {
        fan.unsubscribe(conn, id.shardId);
      }
    };
    const encoding = headers['grpc-encoding'];
    stream.on('data', (chunk: Buffer) => {
      if (conn.state !== 'open') return;
      const err = decoder.push(chunk, onMessage);
      if (err === undefined) return;
      if (err.code === 'too_large') {
        fail('message_size', {
          code: GrpcStatus.RESOURCE_EXHAUSTED,
          message: `message of ${err.length} bytes exceeds the limit of ${limits.maxMessageBytes}`,
        });
      } else if (err.code === 'compressed') {
        fail('compressed', {
          code: GrpcStatus.UNIMPLEMENTED,
          message: `compressed messages are not supported (grpc-encoding ${String(encoding ?? 'identity')}); use identity`,
        });
      } else {
        metrics.parseError('bad_frame_flag');
        fail('malformed', {
          code: GrpcStatus.INTERNAL,
          message: `bad gRPC frame flag ${err.flag}`,
        });
      }
    });
    stream.on('end', () => {
      // A half-close inside a message: the peer sent a truncated frame; say so, never OK.
      if (conn.state === 'open' && decoder.bufferedBytes > 0) {
        metrics.parseError('truncated_frame');
        fail('malformed', {
          code: GrpcStatus.INTERNAL,
          message: `the request stream ended inside a gRPC message (${decoder.bufferedBytes} bytes of an incomplete frame)`,
        });
        return;
      }
      // The client half-closed: the reference server ends the response stream too.
      fan.end(conn, { code: GrpcStatus.OK, message: '' }, 'end');
    });
    stream.on('drain', () => fan.drained(conn));
    stream.on('error', (err) => conn.log.debug({ err }, 'stream error'));
    stream.once('close', () => {
      if (session !== undefined) sessions.get(session)?.delete(conn);
      const status = conn.status ?? { code: GrpcStatus.CANCELLED, message: 'peer went away' };
      metrics.connectionClosed(statusName(status.code));
      fan.remove(conn, `stream closed (${statusName(status.code)})`);
    });
  }

  function onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => {});
    try {
      if (headers[':method'] !== 'POST' || !isGrpcContentType(headers['content-type'])) {
        metrics.rejected('content_type');
        if (!stream.headersSent) stream.respond({ ':status': 415 }, { endStream: true });
        return;
      }
      const path = headers[':path'];
      if (path === PUBSUB_METHOD_PATH) onPubSubStream(stream, headers);
      else if (
        path === HEALTH_CHECK_PATH ||
        path === HEALTH_WATCH_PATH ||
        path === HEALTH_LIST_PATH
      ) {
        health.handle(stream, path);
      } else if (reflection?.handles(path)) {
        reflection.handle(stream);
      } else {
        reject(stream, 'unimplemented', {
          code: GrpcStatus.UNIMPLEMENTED,
          message: `unknown method ${String(path)}`,
        });
      }
    } catch (err) {
      // Defensive: nothing a peer sends may crash the broker.
      log.error({ err }, 'unexpected error handling a stream');
      if (!stream.destroyed) stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    }
  }

  function onSession(session: Http2Session): void {
    sessions.set(session, new Set());
    try {
      session.setLocalWindowSize(SESSION_WINDOW_BYTES);
    } catch {
      // A session that is already closing.
    }
    session.on('error', (err) => log.debug({ err }, 'session error'));
    const timers: NodeJS.Timeout[] = [];
    if (o.keepaliveTimeMs > 0) {
      const t = setInterval(() => {
        if (session.destroyed || session.closed) return;
        const deadline = setTimeout(() => {
          log.debug('keepalive ping unanswered: closing the session');
          session.destroy();
        }, o.keepaliveTimeoutMs);
        deadline.unref();
        try {
          session.ping((err) => {
            clearTimeout(deadline);
            if (err !== null && !session.destroyed) session.destroy();
          });
        } catch {
          clearTimeout(deadline);
          session.destroy();
        }
      }, o.keepaliveTimeMs);
      t.unref();
      timers.push(t);
    }
    if (o.maxConnectionAgeMs > 0) {
      const age = o.maxConnectionAgeMs * (0.9 + 0.2 * Math.random());
      const t = setTimeout(() => ageOut(session), age);
      t.unref();
      timers.push(t);
    }
    session.once('close', () => {
      for (const t of timers) clearTimeout(t);
      sessions.delete(session);
    });
  }

  function ageOut(session: Http2Session): void {
    if (session.destroyed || session.closed) return;
    log.debug('max connection age reached: GOAWAY');
    try {
      session.close();
    } catch {
      session.destroy();
      return;
    }
    for (const conn of sessions.get(session) ?? []) {
      fan.end(
        conn,
        { code: GrpcStatus.UNAVAILABLE, message: 'max connection age reached; reconnect' },
        'end',
      );
    }
  }

  // ------------------------------------------------------------------------------------------
  // Same-process connections

  function connectInProcess(opts: InProcessConnectOptions): InProcessConnection {
    if (typeof opts !== 'object' || opts === null || typeof opts.onMessage !== 'function') {
      throw new BrokerError('invalid_argument', 'connectInProcess: onMessage must be a function');
    }
    if (state !== 'serving') throw new BrokerError('unavailable', `broker is ${state}`);
    if (fan.connections.size >= limits.maxConnections) {
      metrics.rejected('connections');
      throw new BrokerError(
        'resource_exhausted',
        `too many connections (limit ${limits.maxConnections})`,
      );
    }
    const { onMessage, onClose } = opts;
    let closedNotified = false;
    const notifyClose = (status: CallStatus) => {
      if (closedNotified) return;
      closedNotified = true;
      try {
        onClose?.({ code: statusName(status.code), message: status.message });
      } catch (err) {
        log.warn({ err }, 'same-process onClose threw');
      }
    };
    const connRef: { conn?: Connection } = {};
    const sink: ConnectionSink = {
      write(items) {
        for (const it of items) {
          try {
            onMessage(it.toMessage());
          } catch (err) {
            connRef.conn?.log.warn({ err }, 'same-process onMessage threw');
          }
        }
        return true;
      },
      end(status) {
        const c = connRef.conn;
        if (c !== undefined) fan.remove(c, 'ended');
        metrics.connectionClosed(statusName(status.code));
        notifyClose(status);
      },
      abort(status) {
        this.end(status);
      },
    };
    const conn = newConnection('local', sanitizeCallerId(opts.callerId), 'in-process', sink, true);
    connRef.conn = conn;
    const open = () => {
      if (conn.state !== 'open') throw new BrokerError('unavailable', 'connection is closed');
    };
    const shard = (shardId: string): string => {
      const id = parseShardId(shardId, limits.maxShardIdBytes);
      if (!id.ok) {
        metrics.rejected(id.reason);
        throw new BrokerError('invalid_argument', id.detail);
      }
      return id.shardId;
    };
    return {
      connId: conn.connId,
      push(shardId, seqno, diff, originTimestampMs) {
        open();
        const id = shard(shardId);
        if (!isSeqno(seqno)) {
          throw new BrokerError('invalid_argument', 'seqno must be a bigint in [0, 2^63-1]');
        }
        if (!(diff instanceof Uint8Array)) {
          throw new BrokerError('invalid_argument', 'diff must be a Uint8Array');
        }
        if (diff.length > limits.maxMessageBytes) {
          metrics.rejected('message_size');
          throw new BrokerError(
            'resource_exhausted',
            `diff of ${diff.length} bytes exceeds the limit of ${limits.maxMessageBytes}`,
          );
        }
        if (
          originTimestampMs !== undefined &&
          (typeof originTimestampMs !== 'number' ||
            !Number.isFinite(originTimestampMs) ||
            originTimestampMs < 0)
        ) {
          throw new BrokerError(
            'invalid_argument',
            'originTimestampMs must be a finite number >= 0',
          );
        }
        const raw = encodePushDiff(id, seqno, diff, originTimestampMs);
        fan.push(conn, id, seqno, raw, { diff, originTimestampMs });
      },
      subscribe(shardId, resumeAfterSeqno) {
        open();
        const id = shard(shardId);
        if (resumeAfterSeqno !== undefined && !isSeqno(resumeAfterSeqno)) {
          throw new BrokerError(
            'invalid_argument',
            'resumeAfterSeqno must be a bigint in [0, 2^63-1]',
          );
        }
        const refused = fan.subscribe(conn, id, resumeAfterSeqno);
        if (refused !== undefined) throw new BrokerError('resource_exhausted', refused.message);
      },
      unsubscribe(shardId) {
        open();
        fan.unsubscribe(conn, shard(shardId));
      },
      close() {
        if (conn.state === 'closed') return;
        fan.remove(conn, 'closed by owner');
        notifyClose({ code: GrpcStatus.OK, message: 'closed' });
      },
    };
  }

  // ------------------------------------------------------------------------------------------
  // Listings (admin)

  function pageSizeOf(request: PageRequest | undefined): number {
    const n = request?.pageSize ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(n) || n < 1) {
      throw new BrokerError('invalid_argument', 'pageSize must be a positive integer');
    }
    return Math.min(n, MAX_PAGE_SIZE);
  }

  function decodeToken(token: string | undefined, prefix: string): string | undefined {
    if (token === undefined || token === '') return undefined;
    const text = Buffer.from(token, 'base64url').toString('utf8');
    if (!text.startsWith(prefix)) throw new BrokerError('invalid_argument', 'invalid pageToken');
    return text.slice(prefix.length);
  }

  function* shardIds(): Generator<string> {
    for (const [shardId] of fan.table.shards()) yield shardId;
  }

  function listShards(request?: PageRequest): Page<ShardInfo> {
    const size = pageSizeOf(request);
    const after = decodeToken(request?.pageToken, 's:');
    // Keys in order, resumed strictly after the last one returned: a shard present for the
    // whole listing is returned exactly once; shards added or removed meanwhile may or may not be.
    // One more than a page tells whether another page follows; no full sort of every shard.
    const keys = smallestAfter(shardIds(), after, size + 1);
    const pageKeys = keys.slice(0, size);
    const items = pageKeys.map((shardId) => {
      const last = fan.resume.lastSeqno(shardId);
      return {
        shardId,
        subscribers: fan.table.subscribers(shardId)?.size ?? 0,
        lastSeqno: last === undefined ? undefined : last.toString(),
      };
    });
    const more = keys.length > size;
    return {
      items,
      nextPageToken: more
        ? Buffer.from(`s:${pageKeys[pageKeys.length - 1]!}`).toString('base64url')
        : undefined,
    };
  }

  function listConnections(request?: PageRequest): Page<ConnectionInfo> {
    const size = pageSizeOf(request);
    const afterText = decodeToken(request?.pageToken, 'c:');
    const after = afterText === undefined ? 0 : Number(afterText);
    if (!Number.isSafeInteger(after))
      throw new BrokerError('invalid_argument', 'invalid pageToken');
    const items: ConnectionInfo[] = [];
    let last = 0;
    let more = false;
    // Map order is insertion order, which is `seq` order.
    for (const c of fan.connections.values()) {
      if (c.seq <= after) continue;
      if (items.length === size) {
        more = true;
        break;
      }
      items.push({
        connId: c.connId,
        callerId: c.callerId,
        remoteAddress: c.remoteAddress,
        connectedAtMs: c.connectedAtMs,
        subscriptions: fan.table.shardsOf(c)?.size ?? 0,
        queueMessages: c.queue.length,
        queueBytes: c.queueBytes,
        dropped: c.dropped,
      });
      last = c.seq;
    }
    return {
      items,
      nextPageToken: more ? Buffer.from(`c:${last}`).toString('base64url') : undefined,
    };
  }

  // ------------------------------------------------------------------------------------------
  // Lifecycle

  async function start(opts?: { signal?: AbortSignal | undefined }): Promise<void> {
    const signal = opts?.signal;
    signal?.throwIfAborted();
    if (server !== undefined) throw new BrokerError('unavailable', 'broker already started');
    if (state !== 'starting') throw new BrokerError('unavailable', `broker is ${state}`);
    // Receive windows above HTTP/2's 64 KiB default, so a busy publisher is not stalled by a
    // short pause of the broker, yet small enough that one read burst fits a subscriber queue.
    const settings = { maxConcurrentStreams: 1000, initialWindowSize: STREAM_WINDOW_BYTES };
    const srv =
      o.tls === undefined
        ? createServer({ settings, maxSessionMemory: 64 })
        : createSecureServer({
            settings,
            maxSessionMemory: 64,
            cert: o.tls.cert,
            key: o.tls.key,
            allowHTTP1: false,
            ALPNProtocols: ['h2'],
            ...(o.tls.clientCa === undefined
              ? {}
              : { ca: o.tls.clientCa, requestCert: true, rejectUnauthorized: true }),
          });
    server = srv;
    srv.on('connection', (socket: Socket) => {
      // Small frames must not wait for Nagle's algorithm (40-200 ms stalls with delayed ACKs).
      socket.setNoDelay(true);
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
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
    bound = { host: o.listen.host, port: addr.port };
    state = 'serving';
    health.notify();
    log.info(
      { address: `${bound.host}:${bound.port}`, tls: o.tls !== undefined },
      'broker serving',
    );
  }

  function endAllConnections(status: CallStatus): void {
    for (const conn of [...fan.connections.values()]) fan.end(conn, status, 'end');
  }

  async function drain(deadlineMs: number): Promise<void> {
    state = 'draining';
    log.info({ deadlineMs }, 'broker draining');
    health.notify();
    const srv = server;
    const serverClosed =
      srv === undefined
        ? Promise.resolve()
        : new Promise<void>((resolve) => srv.close(() => resolve()));
    for (const session of sessions.keys()) {
      try {
        session.close();
      } catch {
        session.destroy();
      }
    }
    const deadline = Date.now() + deadlineMs;
    while (state === 'draining' && fan.connections.size > 0 && Date.now() < deadline) {
      await new Promise((r) =>
        setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))).unref(),
      );
    }
    endAllConnections({ code: GrpcStatus.UNAVAILABLE, message: 'broker is shutting down' });
    health.endAll();
    // Give streams a moment to take their trailers, then cut what is left.
    const grace = Date.now() + Math.min(1000, Math.max(100, deadlineMs));
    while (state === 'draining' && sessions.size > 0 && Date.now() < grace) {
      await new Promise((r) => setTimeout(r, 20).unref());
    }
    for (const session of sessions.keys()) session.destroy();
    for (const socket of sockets) socket.destroy();
    await serverClosed;
    fan.dispose();
    state = 'closed';
    log.info('broker closed');
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
    listShards,
    listConnections,
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
    close(opts) {
      if (closing !== undefined) return closing;
      const deadlineMs = opts?.deadlineMs ?? DEFAULT_DRAIN_DEADLINE_MS;
      if (!Number.isFinite(deadlineMs) || deadlineMs < 0) {
        return Promise.reject(
          new BrokerError('invalid_argument', 'close: deadlineMs must be >= 0'),
        );
      }
      if (state === 'starting' && server === undefined) {
        state = 'closed';
        fan.dispose();
        closing = Promise.resolve();
        return closing;
      }
      const signal = opts?.signal;
      if (signal !== undefined) {
        const cut = () => destroyNow();
        if (signal.aborted) cut();
        else signal.addEventListener('abort', cut, { once: true });
      }
      closing = drain(deadlineMs);
      return closing;
    },
    destroy: destroyNow,
    connectInProcess,
  };

  function destroyNow(): void {
    if (state === 'closed') return;
    state = 'closed';
    health.notify();
    endAllConnections({ code: GrpcStatus.UNAVAILABLE, message: 'broker destroyed' });
    for (const session of sessions.keys()) session.destroy();
    for (const socket of sockets) socket.destroy();
    server?.close();
    fan.dispose();
    closing ??= Promise.resolve();
  }
}
