/**
 * The same-process delegate: when the broker runs in this process, the client talks to it
 * through `Broker.connectInProcess` with no serialization and no sockets (the reference's
 * `PubSubClientConnection` same-process delegate). Fan-out semantics, limits and gap notices
 * are the broker's, exactly as for a gRPC peer. The connection lives as long as the broker
 * serves; when the broker closes, the shared reconnect loop retries as it would for gRPC.
 */
import {
  type Broker,
  BrokerError,
  type InProcessConnection,
  type InProcessMessage,
  type ListenAddress,
} from '../broker/index.js';
import { ClientError } from './errors.js';
import type {
  ConnectOptions,
  InboundMessage,
  PubSubConnection,
  PubSubTransport,
} from './transport.js';

export interface InProcessTransportOptions {
  /** As the gRPC `persist-pubsub-caller-id` header. @default 'unknown' */
  callerId?: string | undefined;
}

function toInbound(msg: InProcessMessage): InboundMessage {
  if (msg.kind === 'push') {
    return {
      kind: 'diff',
      shardId: msg.shardId,
      seqno: msg.seqno,
      diff: msg.diff,
      originTimestampMs: msg.originTimestampMs,
      brokerTimestampMs: msg.timestampMs,
      bytes: msg.diff.byteLength,
    };
  }
  if (msg.kind === 'refused') {
    return {
      kind: 'refused',
      shardId: msg.shardId,
      reason: msg.reason,
      detail: msg.detail,
      call: msg.call,
      bytes: 0,
    };
  }
  return {
    kind: 'gap',
    shardId: msg.shardId,
    reason: msg.reason,
    fromSeqno: msg.fromSeqno === 0n ? undefined : msg.fromSeqno,
    bytes: 0,
  };
}

export function createInProcessTransport(
  broker: Broker<ListenAddress>,
  options: InProcessTransportOptions = {},
): PubSubTransport {
  return {
    kind: 'in-process',
    async connect({ signal, onMessage, onClose }: ConnectOptions): Promise<PubSubConnection> {
      signal.throwIfAborted();
      if (broker.state !== 'serving') {
        throw new ClientError('unavailable', `the in-process broker is ${broker.state}`);
      }
      let open = true;
      let conn: InProcessConnection;
      try {
        conn = broker.connectInProcess({
          callerId: options.callerId,
          onMessage: (msg) => {
            if (open) onMessage(toInbound(msg));
          },
          onClose: (reason) => {
            if (!open) return;
            open = false;
            onClose(
              new ClientError(
                'unavailable',
                `broker closed the connection: ${reason.code} ${reason.message}`,
              ),
            );
          },
        });
      } catch (cause) {
        throw new ClientError('unavailable', 'the in-process broker refused the connection', {
          cause,
        });
      }
      /**
       * A subscribe or push the broker refuses (it throws) is reported as the gRPC path's
       * refusal notice, after the call returns: the shard is refused, the connection stays.
       */
      const attempt = (
        fn: () => void,
        bytes: number,
        shardId: string,
        call: 'subscribe' | 'push',
        refusable: readonly BrokerError['code'][],
      ): number | false => {
        if (!open) return false;
        try {
          fn();
          return bytes;
        } catch (err) {
          if (err instanceof BrokerError && refusable.includes(err.code)) {
            const reason =
              err.code === 'invalid_argument' ? 'invalid_shard_id' : 'subscription_limit';
            queueMicrotask(() => {
              if (open) {
                onMessage({
                  kind: 'refused',
                  shardId,
                  reason,
                  detail: err.message,
                  call,
                  bytes: 0,
                });
              }
            });
          }
          return false;
        }
      };
      return {
        subscribe: (shardId, resume) =>
          attempt(() => conn.subscribe(shardId, resume), shardId.length, shardId, 'subscribe', [
            'invalid_argument',
            'resource_exhausted',
          ]),
        unsubscribe: (shardId) =>
          attempt(() => conn.unsubscribe(shardId), shardId.length, shardId, 'subscribe', []),
        push: (shardId, seqno, diff, originTimestampMs) =>
          attempt(
            () => conn.push(shardId, seqno, diff, originTimestampMs),
            diff.byteLength,
            shardId,
            'push',
            ['invalid_argument'],
          ),
        bufferedBytes: () => 0,
        close() {
          if (!open) return;
          open = false;
          conn.close();
        },
      };
    },
  };
}
