/**
 * The gRPC `PubSub` call on one HTTP/2 server stream (`server-stream.ts`): admission (bearer token, serving,
 * connection limit), then one `Connection` whose inbound bytes are split into gRPC messages
 * (the protocol's frame decoder), each envelope decoded once by the protocol codec and handed to the fan-out core,
 * and whose outbound batches are written as one stream write per flush. A stream admitted by a
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
import type { Logger } from 'pino';
import {
  CALLER_ID_HEADER,
  createFrameDecoder,
  decodeMessage,
  EXTENSIONS_HEADER,
  parseShardId,
  type ShardId,
  sanitizeCallerId,
} from '../protocol/index.js';
import type { Clock } from '../util/index.js';
import type { BearerAuth } from './bearer-auth.js';
import type { Connection, ConnectionOpener, ConnectionSink } from './connection.js';
import type { FanoutCore } from './fanout.js';
import { rstCodeFor } from './grpc-respond.js';
import { type CallStatus, GrpcStatus, statusName } from './grpc-status.js';
import type { BrokerMetrics, RejectReason } from './metrics.js';
import type { RequestHeaders, ServerSession, ServerStream } from './server-stream.js';
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
  handle(stream: ServerStream, headers: RequestHeaders): void;
  /** Ends every PubSub call of `session` with `status` (its maximum age is reached). */
  endSession(session: ServerSession, status: CallStatus): void;
}

export function createPubSubStreams(deps: PubSubStreamDeps): PubSubStreams {
  const { fan, opener, metrics, limits, log, clock } = deps;
  const bySession = new Map<ServerSession, Set<Connection>>();

  function reject(stream: ServerStream, reason: RejectReason, status: CallStatus): void {
    metrics.rejected(reason);
    log.debug({ reason, status: statusName(status.code), detail: status.message }, 'call rejected');
    stream.respondTrailersOnly(status);
  }

  function sinkOf(stream: ServerStream): ConnectionSink {
    return {
      write(items) {
        if (stream.closed || stream.ended) return true;
        return stream.writeFrames(items);
      },
      end(status) {
        if (stream.closed) return;
        stream.end(status);
        if (stream.closed) return;
        // A peer that does not read never takes the trailers: reset it after a grace period.
        const t = clock.setTimer(() => stream.reset(rstCodeFor(status.code)), END_GRACE_MS);
        stream.onClose(() => t.cancel());
      },
      abort(status) {
        stream.reset(rstCodeFor(status.code));
      },
    };
  }

  function handle(stream: ServerStream, headers: RequestHeaders): void {
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
    const remoteAddress =
      session.remoteAddress === undefined
        ? 'unknown'
        : `${session.remoteAddress}:${session.remotePort}`;
    const c = opener.open(
      'grpc',
      // A scoped token names its caller; the header is the caller's own word.
      principal.kind === 'scoped'
        ? principal.scope.name
        : sanitizeCallerId(headers[CALLER_ID_HEADER]),
      remoteAddress,
      sinkOf(stream),
      headers[EXTENSIONS_HEADER] === '1',
    );
    const scope: StreamScope | undefined =
      principal.kind === 'scoped' ? deps.scopes.attach(c, principal.scope) : undefined;
    let set = bySession.get(session);
    if (set === undefined) {
      const created = new Set<Connection>();
      set = created;
      bySession.set(session, created);
      session.onClose(() => {
        if (bySession.get(session) === created) bySession.delete(session);
      });
    }
    set.add(c);
    stream.sendHeaders();

    const fail = (reason: RejectReason | undefined, status: CallStatus): void => {
      if (reason !== undefined) metrics.rejected(reason);
      c.log.debug({ reason, detail: status.message }, 'ending connection: bad input');
      fan.end(c, status, 'end');
    };
    const decoder = createFrameDecoder(limits.maxMessageBytes);
    const onMessage = (buf: Buffer, start: number, end: number): void => {
      if (c.state !== 'open') return;
      const env = decodeMessage(buf, start, end);
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
      let shardId: ShardId;
      if (env.kind === 'push' && env.shardIdValid && env.shardId.length <= limits.maxShardIdBytes) {
        // The codec's id cache checked the charset when it took the id in; the length is the
        // only part of the rule that depends on the limit: no `parseShardId` (a Set lookup and
        // a result object) per push.
        shardId = env.shardId as ShardId;
      } else {
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
        shardId = id.shardId;
      }
      if (env.kind === 'push') {
        if (scope !== undefined && !scope.mayPush(shardId)) scope.refuse('push', shardId);
        else fan.push(c, shardId, env.seqno, env.pushDiff);
      } else if (env.kind === 'subscribe') {
        if (scope !== undefined && !scope.maySubscribe(shardId)) {
          // As the core would have: a resume shows that the client speaks extensions.
          if (env.resumeAfterSeqno !== undefined) c.extensions = true;
          scope.refuse('subscribe', shardId);
          return;
        }
        const refusedSub = fan.subscribe(c, shardId, env.resumeAfterSeqno);
        // Counted by the core already.
        if (refusedSub === undefined) return;
        if (c.extensions) {
          fan.refuse(c, shardId, 'subscription_limit', refusedSub.message, 'subscribe');
        } else fail(undefined, refusedSub);
      } else {
        fan.unsubscribe(c, shardId);
      }
    };
    const encoding = headers['grpc-encoding'];
    const onData = (chunk: Buffer): void => {
      if (c.state !== 'open') return;
      const err = decoder.pushInPlace(chunk, onMessage);
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
    };
    const onEnd = (): void => {
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
    };
    stream.listen({ data: onData, end: onEnd, drain: () => fan.drained(c) });
    stream.onClose(() => {
      scope?.detach();
      bySession.get(session)?.delete(c);
      // No status chosen: the peer cancelled the call (RST_STREAM on a live session), or its
      // TCP connection was reset or lost.
      const label =
        c.status !== undefined
          ? statusName(c.status.code)
          : session.destroyed
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
