/**
 * The gRPC response on an HTTP/2 stream (gRPC over HTTP/2 spec), shared by both server
 * implementations (`server-stream.ts`): response headers `:status 200` + `content-type:
 * application/grpc`, length-prefixed messages, then `grpc-status`/`grpc-message` trailers; or a
 * trailers-only response (one HEADERS frame with END_STREAM) for a call that fails before any
 * message.
 */
import { ErrorCode } from '../protocol/h2/index.js';
import { GRPC_CONTENT_TYPE } from '../protocol/index.js';
import { type CallStatus, encodeGrpcMessage, GrpcStatus } from './grpc-status.js';

/** True for the content types we serve: `application/grpc` and `application/grpc+proto`. */
export function isGrpcContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const v = value.split(';', 1)[0]!.trim().toLowerCase();
  return v === 'application/grpc' || v === 'application/grpc+proto';
}

/** The response headers of every gRPC call, in order. */
export const GRPC_RESPONSE_HEADERS: readonly (readonly [string, string])[] = [
  [':status', '200'],
  ['content-type', GRPC_CONTENT_TYPE],
  ['grpc-accept-encoding', 'identity'],
];

/** The trailers of `status`, in order. */
export function grpcTrailers(status: CallStatus): [string, string][] {
  const t: [string, string][] = [['grpc-status', String(status.code)]];
  if (status.message.length > 0) t.push(['grpc-message', encodeGrpcMessage(status.message)]);
  return t;
}

/**
 * The RST_STREAM code whose gRPC mapping (grpc-js, gRPC core) is closest to `code`, for
 * ending a stream that cannot take trailers (its peer is not reading).
 */
export function rstCodeFor(code: number): number {
  if (code === GrpcStatus.RESOURCE_EXHAUSTED) return ErrorCode.ENHANCE_YOUR_CALM;
  if (code === GrpcStatus.UNAVAILABLE) return ErrorCode.REFUSED_STREAM;
  if (code === GrpcStatus.INTERNAL) return ErrorCode.INTERNAL_ERROR;
  return ErrorCode.CANCEL;
}
