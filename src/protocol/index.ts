// The wire protocol's public surface: the concepts every layer shares (shard id, seqno range,
// gRPC method and headers, NATS subjects, timestamps) and the `ProtoPubSubMessage` codec.
// Depends on nothing else in src/.

export type {
  DecodeError,
  DecodeErrorCode,
  DecodeResult,
  EmptyMessage,
  GapMessage,
  GapReason,
  PubSubMessage,
  RefusalMessage,
  RefusalReason,
  RefusedCall,
  SubscribeMessage,
  UnsubscribeMessage,
} from './codec.js';
export {
  decodeMessage,
  encodeForward,
  encodeGap,
  encodePush,
  encodePushDiff,
  encodeRefusal,
  encodeSubscribe,
  encodeUnsubscribe,
  forwardLength,
  PushMessage,
  writeForward,
} from './codec.js';
export type { DurationParts } from './duration.js';
export { durationFromMs, msFromDuration } from './duration.js';
export type { FrameDecodeError, FrameDecoder } from './frame-decoder.js';
export { createFrameDecoder } from './frame-decoder.js';
export {
  AUTHORIZATION_HEADER,
  bearerAuthorization,
  bearerToken,
  CALLER_ID_HEADER,
  DEFAULT_KEEPALIVE_TIME_MS,
  DEFAULT_KEEPALIVE_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_BYTES,
  EXTENSIONS_HEADER,
  frameMessage,
  GRPC_CONTENT_TYPE,
  GRPC_FRAME_HEADER_BYTES,
  MAX_CALLER_ID_CHARS,
  PUBSUB_METHOD_PATH,
  PUBSUB_SERVICE_NAME,
  sanitizeCallerId,
} from './grpc.js';
export type { SubjectPrefixResult } from './nats-subject.js';
export {
  DEFAULT_SUBJECT_PREFIX,
  ORIGIN_HEADER,
  parseSubjectPrefix,
  shardIdOfSubject,
  shardSubject,
} from './nats-subject.js';
export type { NatsTarget } from './nats-url.js';
export { parseNatsUrl } from './nats-url.js';
export { isSeqno, MAX_SEQNO } from './seqno.js';
export type { ShardId, ShardIdErrorReason, ShardIdResult } from './shard-id.js';
export {
  DEFAULT_MAX_SHARD_ID_BYTES,
  MAX_SHARD_ID_BYTES_LIMIT,
  parseShardId,
  ShardIdError,
  toShardId,
} from './shard-id.js';
export type { UnixTargetResult } from './unix-target.js';
export {
  checkSocketPath,
  formatUnixTarget,
  isUnixTarget,
  MAX_UNIX_SOCKET_PATH_BYTES,
  parseUnixTarget,
  UNIX_SOCKET_AUTHORITY,
} from './unix-target.js';
