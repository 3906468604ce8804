/**
 * The gRPC transport: one bidi `PubSub` stream per connection to the broker, wire-compatible
 * with Materialize's `ProtoPersistPubSub`.
 *
 * Why grpc-js rather than connect-node's gRPC transport: measured ping-pong through a local
 * echo (`node test/fixtures/client-transport-pingpong.mjs 10000`, 256-byte diffs, loopback),
 * the two are within noise of each other (p50 43–65 µs for grpc-js vs 50–71 µs for
 * connect-node over two runs), so latency does not decide. grpc-js does: it exposes channel
 * keepalive, the connectivity state we wait on before declaring a connection, per-write flush
 * callbacks (our bounded send queue) and plain `Metadata`, and the broker itself runs on it.
 * Messages go through pass-through serializers and `@bufbuild/protobuf` `toBinary`/`fromBinary`,
 * so no proto loader and no second copy of the schema.
 *
 * Each connection attempt uses a fresh channel, closed when the connection ends: the reconnect
 * loop in `createPubSubClient` owns the backoff, not grpc-js's channel-internal one.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import {
  ProtoGapReason,
  type ProtoPubSubMessage,
  ProtoPubSubMessageSchema,
  ProtoPushDiffSchema,
  ProtoSubscribeSchema,
  ProtoUnsubscribeSchema,
} from '../gen/mz_persist_client/internal/service/pubsub_pb.js';
import type { ProtoDuration } from '../gen/mz_proto/proto_pb.js';
import { ClientError } from './errors.js';
import { parseGrpcAddress } from './grpc-address.js';
import type { ReceivedGap } from './pubsub-client.js';
import type {
  ConnectOptions,
  InboundMessage,
  PubSubConnection,
  PubSubTransport,
  SendResult,
} from './transport.js';

/** The HTTP/2 path of the reference's one method. */
export const PUBSUB_METHOD_PATH = '/mz_persist_client.internal.service.ProtoPersistPubSub/PubSub';
/** Request header naming the caller (reference). */
export const CALLER_ID_HEADER = 'persist-pubsub-caller-id';
/** Request header asking the broker for extension messages (gap notices). */
export const EXTENSIONS_HEADER = 'persist-pubsub-extensions';

export const DEFAULT_KEEPALIVE_TIME_MS = 30_000;
export const DEFAULT_KEEPALIVE_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
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
  /** `grpc://host:port` or `grpcs://host:port`. */
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
  /** Wall clock in ms since the Unix epoch (message timestamps). @default Date.now */
  now?: (() => number) | undefined;
}

const identity = (b: Buffer): Buffer => b;
const ASCII = /^[\x20-\x7e]*$/;

/** Ms since the Unix epoch (fractional allowed; negative or non-finite taken as 0). */
function durationFromMs(ms: number): ProtoDuration {
  const t = Number.isFinite(ms) && ms > 0 ? ms : 0;
  const secs = Math.floor(t / 1000);
  return {
    $typeName: 'mz_proto.ProtoDuration',
    secs: BigInt(secs),
    nanos: Math.min(999_999_999, Math.round((t - secs * 1000) * 1e6)),
  };
}

function msFromDuration(d: ProtoDuration | undefined): number | undefined {
  if (d === undefined) return undefined;
  return Number(d.secs) * 1000 + d.nanos / 1e6;
}

const GAP_REASONS: Record<ProtoGapReason, ReceivedGap['reason']> = {
  [ProtoGapReason.UNSPECIFIED]: 'unknown',
  [ProtoGapReason.SLOW_CONSUMER]: 'slow_consumer',
  [ProtoGapReason.RESUME_UNAVAILABLE]: 'resume_unavailable',
  [ProtoGapReason.NOT_FORWARDING]: 'not_forwarding',
};

/** Parses one inbound message at the edge; never throws. */
export function decodeInbound(bytes: Uint8Array): InboundMessage {
  let msg: ProtoPubSubMessage;
  try {
    msg = fromBinary(ProtoPubSubMessageSchema, bytes);
  } catch {
    return { kind: 'unknown', bytes: bytes.byteLength };
  }
  const brokerTimestampMs = msFromDuration(msg.timestamp);
  switch (msg.message.case) {
    case 'pushDiff': {
      const p = msg.message.value;
      if (p.shardId === '') return { kind: 'unknown', bytes: bytes.byteLength };
      return {
        kind: 'diff',
        shardId: p.shardId,
        seqno: p.seqno,
        diff: p.diff,
        originTimestampMs: msFromDuration(p.originTimestamp),
        brokerTimestampMs,
        bytes: bytes.byteLength,
      };
    }
    case 'gap': {
      const g = msg.message.value;
      if (g.shardId === '') return { kind: 'unknown', bytes: bytes.byteLength };
      return {
        kind: 'gap',
        shardId: g.shardId,
        reason: GAP_REASONS[g.reason] ?? 'unknown',
        fromSeqno: g.fromSeqno === 0n ? undefined : g.fromSeqno,
        bytes: bytes.byteLength,
      };
    }
    default:
      return { kind: 'unknown', bytes: bytes.byteLength };
  }
}

function checkMs(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0) {
    throw new ClientError('invalid_argument', `${name} must be an integer >= 0, got ${v}`, {
      field: name,
    });
  }
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
  const toBuf = (v: string | Buffer | undefined): Buffer | null =>
    v === undefined ? null : typeof v === 'string' ? Buffer.from(v) : v;
  const credentials = address.tls
    ? grpc.credentials.createSsl(toBuf(tls?.ca), toBuf(tls?.key), toBuf(tls?.cert))
    : grpc.credentials.createInsecure();
  const channelOptions: grpc.ChannelOptions = {
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.enable_retries': 0,
    ...(keepaliveTimeMs > 0
      ? {
          'grpc.keepalive_time_ms': keepaliveTimeMs,
          'grpc.keepalive_timeout_ms': keepaliveTimeoutMs,
          'grpc.keepalive_permit_without_calls': 1,
        }
      : {}),
    ...(tls?.serverName !== undefined ? { 'grpc.ssl_target_name_override': tls.serverName } : {}),
  };
  const now = options.now ?? Date.now;

  const encode = (msg: ProtoPubSubMessage['message']): Buffer => {
    const bin = toBinary(
      ProtoPubSubMessageSchema,
      create(ProtoPubSubMessageSchema, { timestamp: durationFromMs(now()), message: msg }),
    );
    return Buffer.from(bin.buffer, bin.byteOffset, bin.byteLength);
  };

  return {
    kind: 'grpc',
    async connect({ signal, onMessage, onClose }: ConnectOptions): Promise<PubSubConnection> {
      signal.throwIfAborted();
      const client = new grpc.Client(address.target, credentials, channelOptions);
      try {
        await new Promise<void>((resolve, reject) => {
          const onAbort = (): void => reject(signal.reason);
          signal.addEventListener('abort', onAbort, { once: true });
          // Fail the attempt at the first TRANSIENT_FAILURE instead of waiting through
          // grpc-js's own reconnect backoff: our loop owns the backoff. The attempt timeout is
          // the caller's signal; grpc-js needs some deadline.
          const channel = client.getChannel();
          const check = (): void => {
            if (signal.aborted) return;
            const state = channel.getConnectivityState(true);
            if (state === grpc.connectivityState.READY) {
              signal.removeEventListener('abort', onAbort);
              resolve();
            } else if (
              state === grpc.connectivityState.TRANSIENT_FAILURE ||
              state === grpc.connectivityState.SHUTDOWN
            ) {
              signal.removeEventListener('abort', onAbort);
              reject(
                new ClientError(
                  'unavailable',
                  `broker ${address.target} unreachable (${grpc.connectivityState[state]})`,
                ),
              );
            } else {
              channel.watchConnectivityState(state, Date.now() + 24 * 3600_000, check);
            }
          };
          check();
        });
      } catch (err) {
        client.close();
        throw err;
      }
      const md = new grpc.Metadata();
      md.set(CALLER_ID_HEADER, callerId);
      md.set(EXTENSIONS_HEADER, '1');
      if (options.authToken !== undefined) md.set('authorization', `Bearer ${options.authToken}`);
      const call = client.makeBidiStreamRequest(PUBSUB_METHOD_PATH, identity, identity, md);
      let open = true;
      // The sender channel bound (reference: a channel of 25 in front of a task that feeds the
      // stream) counts pushes made while the stream is backpressured: `write()` said stop and
      // the stream had still not drained by the next event-loop turn. A burst within one turn
      // (a writer committing many shards at once) is never dropped for being a burst; a stream
      // that stays behind gets at most the bound more, then pushes are dropped and counted.
      let needsDrain = false;
      let behind = false;
      let pushedWhileBehind = 0;
      let accepted = false;
      let acceptWait: { resolve: () => void; reject: (err: Error) => void } | undefined;
      const finish = (err: Error | undefined): void => {
        if (!open) return;
        open = false;
        call.removeAllListeners('data');
        client.close();
        if (!accepted) {
          acceptWait?.reject(
            err ??
              new ClientError('unavailable', 'the broker ended the stream before accepting it'),
          );
          return;
        }
        onClose(err);
      };
      call.on('data', (buf: Buffer) => {
        if (open) onMessage(decodeInbound(buf));
      });
      call.on('error', (err: grpc.ServiceError) =>
        finish(
          new ClientError('unavailable', `pubsub stream failed: ${err.code} ${err.details}`, {
            cause: err,
          }),
        ),
      );
      call.on('end', () => finish(undefined));
      call.on('drain', () => {
        needsDrain = false;
        behind = false;
        pushedWhileBehind = 0;
      });
      // The stream counts as connected once the broker accepted it: response headers arrived
      // (our broker sends them at once; a refusal such as UNAUTHENTICATED is trailers-only and
      // fails the attempt here, with connect backoff). A server that sends headers only with
      // its first message is taken as accepted after `acceptGraceMs` without an error.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => settle(), acceptGraceMs);
        timer.unref();
        const onAbort = (): void => settle(signal.reason as Error);
        function settle(err?: Error): void {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          if (acceptWait === undefined) return;
          acceptWait = undefined;
          if (err === undefined) resolve();
          else reject(err);
        }
        acceptWait = { resolve: () => settle(), reject: (err) => settle(err) };
        call.once('metadata', () => acceptWait?.resolve());
        signal.addEventListener('abort', onAbort, { once: true });
      }).catch((err: unknown) => {
        if (open) {
          open = false;
          call.removeAllListeners('data');
          call.cancel();
          client.close();
        }
        throw err;
      });
      accepted = true;
      const send = (msg: ProtoPubSubMessage['message'], isPush: boolean): SendResult => {
        if (!open) return false;
        const buf = encode(msg);
        if (isPush && behind) pushedWhileBehind++;
        if (!call.write(buf) && !needsDrain) {
          needsDrain = true;
          setImmediate(() => {
            if (needsDrain) behind = true;
          }).unref();
        }
        return buf.byteLength;
      };
      return {
        subscribe: (shardId, resumeAfterSeqno) =>
          send(
            {
              case: 'subscribe',
              value: create(ProtoSubscribeSchema, {
                shardId,
                ...(resumeAfterSeqno !== undefined ? { resumeAfterSeqno } : {}),
              }),
            },
            false,
          ),
        unsubscribe: (shardId) =>
          send(
            {
              case: 'unsubscribe',
              value: create(ProtoUnsubscribeSchema, {
                shardId,
              }),
            },
            false,
          ),
        push: (shardId, seqno, diff, originTimestampMs) =>
          send(
            {
              case: 'pushDiff',
              value: create(ProtoPushDiffSchema, {
                shardId,
                seqno,
                diff,
                originTimestamp: durationFromMs(originTimestampMs),
              }),
            },
            true,
          ),
        pendingPushes: () => pushedWhileBehind,
        close() {
          if (!open) return;
          open = false;
          call.removeAllListeners('data');
          call.cancel();
          client.close();
        },
      };
    },
  };
}
