/**
 * Same-process connections (`Broker.connectInProcess`): the reference's same-process delegate.
 * The same fan-out, limits and queues as a gRPC stream, without serialization: pushes carry
 * their decoded fields (the forwarded frame is still encoded once, for gRPC subscribers), and
 * deliveries are callbacks, always after the push that caused them returned (the core flushes
 * them at the end of the turn, never inside `push`).
 *
 * Arguments are checked here, at this edge, with the same rules as the wire (shard id, seqno
 * range, message size); a bad one is a `BrokerError` for the caller, never a closed connection.
 */
import type { Logger } from 'pino';
import { encodePushDiff, isSeqno, parseShardId, sanitizeCallerId } from '../protocol/index.js';
import type { Connection, ConnectionOpener, ConnectionSink } from './connection.js';
import { BrokerError } from './errors.js';
import type { FanoutCore } from './fanout.js';
import { type CallStatus, GrpcStatus, statusName } from './grpc-status.js';
import type { BrokerMetrics } from './metrics.js';
import type { BrokerLimits, InProcessConnection, InProcessConnectOptions } from './types.js';

export interface InProcessDeps {
  fan: FanoutCore;
  opener: ConnectionOpener;
  metrics: BrokerMetrics;
  limits: BrokerLimits;
  log: Logger;
}

export function connectInProcess(
  deps: InProcessDeps,
  opts: InProcessConnectOptions,
): InProcessConnection {
  const { fan, opener, metrics, limits, log } = deps;
  if (typeof opts !== 'object' || opts === null || typeof opts.onMessage !== 'function') {
    throw new BrokerError('invalid_argument', 'connectInProcess: onMessage must be a function');
  }
  const refused = opener.refusal();
  if (refused !== undefined) {
    if (refused.reason === 'connections') metrics.rejected('connections');
    const code = refused.reason === 'connections' ? 'resource_exhausted' : 'unavailable';
    throw new BrokerError(code, refused.status.message);
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
  let conn: Connection | undefined;
  const sink: ConnectionSink = {
    write(items) {
      for (const it of items) {
        try {
          onMessage(it.toMessage());
        } catch (err) {
          conn?.log.warn({ err }, 'same-process onMessage threw');
        }
      }
      return true;
    },
    end(status) {
      if (conn !== undefined) fan.remove(conn, 'ended');
      metrics.connectionClosed(statusName(status.code));
      notifyClose(status);
    },
    abort(status) {
      this.end(status);
    },
  };
  const c = opener.open(
    'local',
    sanitizeCallerId(opts.callerId),
    'in-process',
    sink,
    true,
    opts.internal === true,
  );
  conn = c;
  const open = () => {
    if (c.state !== 'open') throw new BrokerError('unavailable', 'connection is closed');
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
    connId: c.connId,
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
        throw new BrokerError('invalid_argument', 'originTimestampMs must be a finite number >= 0');
      }
      const raw = encodePushDiff(id, seqno, diff, originTimestampMs);
      fan.push(c, id, seqno, raw, { diff, originTimestampMs });
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
      const refusedSub = fan.subscribe(c, id, resumeAfterSeqno);
      if (refusedSub !== undefined) throw new BrokerError('resource_exhausted', refusedSub.message);
    },
    unsubscribe(shardId) {
      open();
      fan.unsubscribe(c, shard(shardId));
    },
    close() {
      if (c.state === 'closed') return;
      fan.remove(c, 'closed by owner');
      notifyClose({ code: GrpcStatus.OK, message: 'closed' });
    },
  };
}
