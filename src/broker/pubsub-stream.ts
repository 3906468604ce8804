/**
 * The gRPC `PubSub` call on a raw `node:http2` server stream: admission (bearer token, serving,
 * connection limit), then one `Connection` whose inbound bytes are split into gRPC messages
 * (the protocol's frame decoder), each envelope decoded once by the protocol codec and handed to the fan-out core,
 * and whose outbound batches are written as one `stream.write` per flush. A stream admitted by a
 * scoped token (`bearer-auth.ts`) is named by it and has each push and subscribe checked against
 * its scope (`stream-scopes.ts`: a cached decision per shard, a refusal that keeps the stream).
 *
 * Bad input ends this call with a status (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED,
 * INTERNAL) and a metric, except a refused shard id or subscription of a client that speaks
 * extensions: that gets a refusal notice for the one shard, and the call goes on. Nothing
 * throws out of here. A client half-close ends the call with OK
 * (as the reference server). The connection's final status is counted once, when the stream
 * closes: a stream that closes before any status was chosen was cancelled by its peer
 * (CANCELLED), or lost with its TCP connection (`RESET`, never OK).
 */
import type { Http2Session, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Logger } from 'pino';
import {
  CALLER_ID_HEADER,
  createFrameDecoder,
  decodeMessage,
  EXTENSIONS_HEADER,
  parseShardId,
  sanitizeCallerId,
} from '../protocol/index.js';
import type { Clock } from '../util/index.js';
import type { BearerAuth } from './bearer-auth.js';
import type { Connection, ConnectionOpener, ConnectionSink } from './connection.js';
import type { FanoutCore } from './fanout.js';
import { respondTrailersOnly, rstCodeFor, startResponse } from './grpc-respond.js';
import { type CallStatus, GrpcStatus, statusName } from './grpc-status.js';
import type { BrokerMetrics, RejectReason } from './metrics.js';
import type { OutItem } from './outbound.js';
import type { StreamScope, StreamScopes } from './stream-scopes.js';
import type { BrokerLimits } from './types.js';

/**
 * The `connections_closed_total` status of a call whose TCP connection was reset or lost before
 * any status was sent (not a gRPC status: no status was ever decided).
 */
export const RESET_LABEL = 'RESET';

/** A stream asked to end gracefully is reset if its peer has not taken the trailers by then, in ms. */
export const END_GRACE_MS = 5_000;

export interface PubSubStreamDeps {
  fan: FanoutCore;
  opener: ConnectionOpener;
  metrics: BrokerMetrics;
  limits: BrokerLimits;
  log: Logger;
  clock: Clock;
  auth: BearerAuth;
  /** Where a scoped token's streams are checked per message (and reloaded). */
  scopes: StreamScopes;
}

export interface PubSubStreams {
  /** Serves one PubSub call. */
  handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void;
  /** Ends every PubSub call of `session` with `status` (its maximum age is reached). */
  endSession(session: Http2Session, status: CallStatus): void;
}

/**
 * Writes a batch as one native write: corked, so that the frames go down as one writev of the
 * shared broadcast buffers. No copy: concatenating them into a fresh Buffer per flush allocated
 * external memory at the delivery rate (60 MB/s at fan-out 10 and 200k deliveries/s), and V8
 * answered with a full mark-compact every few hundred ms, each a 6-18 ms event-loop stall.
 */
function writeBatch(stream: ServerHttp2Stream, items: OutItem[]): boolean {
  if (items.length === 1) return stream.write(items[0]!.frame);
  stream.cork();
  let ok = true;
  for (const it of items) ok = stream.write(it.frame);
  stream.uncork();
  return ok;
}

export function createPubSubStreams(deps: PubSubStreamDeps): PubSubStreams {
  const { fan, opener, metrics, limits, log, clock } = deps;
  const bySession = new Map<Http2Session, Set<Connection>>();

  function reject(stream: ServerHttp2Stream, reason: RejectReason, status: CallStatus): void {
    metrics.rejected(reason);
    log.debug({ reason, status: statusName(status.code), detail: status.message }, 'call rejected');
    respondTrailersOnly(stream, status);
  }

  function sinkOf(stream: ServerHttp2Stream, final: () => CallStatus | undefined): ConnectionSink {
    return {
      write(items) {
        if (stream.destroyed || stream.writableEnded) return true;
        return writeBatch(stream, items);
      },
      end() {
        if (stream.destroyed) return;
        stream.end();
        // A peer that does not read never takes the trailers: reset it after a grace period.
        const t = clock.setTimer(() => {
          if (!stream.destroyed && !stream.closed) {
            stream.close(rstCodeFor(final()?.code ?? GrpcStatus.CANCELLED));
          }
        }, END_GRACE_MS);
        stream.once('close', () => t.cancel());
      },
      abort(status) {
        if (!stream.destroyed && !stream.closed) stream.close(rstCodeFor(status.code));
      },
    };
  }

  function handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const principal = deps.auth.authenticate(headers);
    if (principal === undefined) {
      reject(stream, 'unauthenticated', {
        code: GrpcStatus.UNAUTHENTICATED,
        message: 'missing or wrong bearer token',
      });
      return;
    }
    const refused = opener.refusal();
    if (refused !== undefined) {
      reject(stream, refused.reason, refused.status);
      return;
    }
    const session = stream.session;
    const socket = session?.socket;
    const remoteAddress =
      socket?.remoteAddress === undefined
        ? 'unknown'
        : `${socket.remoteAddress}:${socket.remotePort}`;
    let conn: Connection | undefined;
    const c = opener.open(
      'grpc',
      // A scoped token names its caller; the header is the caller's own word.
      principal.kind === 'scoped'
        ? principal.scope.name
        : sanitizeCallerId(headers[CALLER_ID_HEADER]),
      remoteAddress,
      sinkOf(stream, () => conn?.status),
      headers[EXTENSIONS_HEADER] === '1',
    );
    conn = c;
    const scope: StreamScope | undefined =
      principal.kind === 'scoped' ? deps.scopes.attach(c, principal.scope) : undefined;
    if (session !== undefined) {
      let set = bySession.get(session);
      if (set === undefined) {
        set = new Set();
        bySession.set(session, set);
        session.once('close', () => bySession.delete(session));
      }
      set.add(c);
    }
    startResponse(stream, () => c.status ?? { code: GrpcStatus.OK, message: '' });

    const fail = (reason: RejectReason | undefined, status: CallStatus): void => {
      if (reason !== undefined) metrics.rejected(reason);
      c.log.debug({ reason, detail: status.message }, 'ending connection: bad input');
      fan.end(c, status, 'end');
    };
    const decoder = createFrameDecoder(limits.maxMessageBytes);
    const onMessage = (message: Buffer): void => {
      if (c.state !== 'open') return;
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
        if (c.extensions) {
          metrics.rejected(id.reason);
          c.log.debug({ reason: id.reason, detail: id.detail }, 'refused a shard id');
          // Echo the id as the client wrote it (the codec hands it over as latin1).
          const asSent = Buffer.from(env.shardId, 'latin1').toString('utf8');
          if (env.kind !== 'unsubscribe') {
            fan.refuse(c, asSent, 'invalid_shard_id', id.detail, env.kind);
          }
          return;
        }
        fail(id.reason, { code: GrpcStatus.INVALID_ARGUMENT, message: id.detail });
        return;
      }
      if (env.kind === 'push') {
        if (scope !== undefined && !scope.mayPush(id.shardId)) scope.refuse('push', id.shardId);
        else fan.push(c, id.shardId, env.seqno, env.pushDiff);
      } else if (env.kind === 'subscribe') {
        if (scope !== undefined && !scope.maySubscribe(id.shardId)) {
          // As the core would have: a resume shows that the client speaks extensions.
          if (env.resumeAfterSeqno !== undefined) c.extensions = true;
          scope.refuse('subscribe', id.shardId);
          return;
        }
        const refusedSub = fan.subscribe(c, id.shardId, env.resumeAfterSeqno);
        // Counted by the core already.
        if (refusedSub === undefined) return;
        if (c.extensions) {
          fan.refuse(c, id.shardId, 'subscription_limit', refusedSub.message, 'subscribe');
        } else fail(undefined, refusedSub);
      } else {
        fan.unsubscribe(c, id.shardId);
      }
    };
    const encoding = headers['grpc-encoding'];
    stream.on('data', (chunk: Buffer) => {
      if (c.state !== 'open') return;
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
      // The readable side also ends when the TCP connection is lost (the peer's FIN without an
      // HTTP/2 close, a killed process): that is no half-close, and `close` labels it.
      if (stream.aborted) return;
      // A half-close inside a message: the peer sent a truncated frame; say so, never OK.
      if (c.state === 'open' && decoder.bufferedBytes > 0) {
        metrics.parseError('truncated_frame');
        fail('malformed', {
          code: GrpcStatus.INTERNAL,
          message: `the request stream ended inside a gRPC message (${decoder.bufferedBytes} bytes of an incomplete frame)`,
        });
        return;
      }
      // The client half-closed: the reference server ends the response stream too.
      fan.end(c, { code: GrpcStatus.OK, message: '' }, 'end');
    });
    stream.on('drain', () => fan.drained(c));
    stream.on('error', (err) => c.log.debug({ err }, 'stream error'));
    stream.once('close', () => {
      scope?.detach();
      if (session !== undefined) bySession.get(session)?.delete(c);
      // No status chosen: the peer cancelled the call (RST_STREAM on a live session), or its
      // TCP connection was reset or lost.
      const label =
        c.status !== undefined
          ? statusName(c.status.code)
          : stream.session === undefined || stream.session.destroyed
            ? RESET_LABEL
            : statusName(GrpcStatus.CANCELLED);
      metrics.connectionClosed(label);
      fan.remove(c, `stream closed (${label})`);
    });
  }

  return {
    handle,
    endSession(session, status) {
      for (const conn of [...(bySession.get(session) ?? [])]) fan.end(conn, status, 'end');
    },
  };
}
