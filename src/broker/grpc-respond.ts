/**
 * Writing gRPC responses on a raw `node:http2` server stream (gRPC over HTTP/2 spec):
 * response headers `:status 200` + `content-type: application/grpc`, length-prefixed messages,
 * then `grpc-status`/`grpc-message` trailers; or a trailers-only response (one HEADERS frame
 * with END_STREAM) for a call that fails before any message.
 */
import { constants, type ServerHttp2Stream } from 'node:http2';
import { GRPC_CONTENT_TYPE } from '../protocol/index.js';
import { type CallStatus, encodeGrpcMessage, GrpcStatus } from './grpc-status.js';

/** True for the content types we serve: `application/grpc` and `application/grpc+proto`. */
export function isGrpcContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const v = value.split(';', 1)[0]!.trim().toLowerCase();
  return v === 'application/grpc' || v === 'application/grpc+proto';
}

function trailers(status: CallStatus): Record<string, string> {
  const t: Record<string, string> = { 'grpc-status': String(status.code) };
  if (status.message.length > 0) t['grpc-message'] = encodeGrpcMessage(status.message);
  return t;
}

/** A trailers-only response. Never throws (the stream may already be gone). */
export function respondTrailersOnly(stream: ServerHttp2Stream, status: CallStatus): void {
  if (stream.destroyed || stream.headersSent) return;
  try {
    stream.respond(
      {
        ':status': 200,
        'content-type': GRPC_CONTENT_TYPE,
        'grpc-accept-encoding': 'identity',
        ...trailers(status),
      },
      { endStream: true },
    );
  } catch {
    stream.destroy();
  }
}

/**
 * Sends response headers; `finalStatus()` is read when the stream ends (`stream.end()`), to
 * send the trailers.
 */
export function startResponse(stream: ServerHttp2Stream, finalStatus: () => CallStatus): void {
  stream.respond(
    { ':status': 200, 'content-type': GRPC_CONTENT_TYPE, 'grpc-accept-encoding': 'identity' },
    { waitForTrailers: true },
  );
  stream.once('wantTrailers', () => {
    try {
      stream.sendTrailers(trailers(finalStatus()));
    } catch {
      stream.destroy();
    }
  });
}

/**
 * The RST_STREAM code whose gRPC mapping (grpc-js, gRPC core) is closest to `code`, for
 * ending a stream that cannot take trailers (its peer is not reading).
 */
export function rstCodeFor(code: number): number {
  if (code === GrpcStatus.RESOURCE_EXHAUSTED) return constants.NGHTTP2_ENHANCE_YOUR_CALM;
  if (code === GrpcStatus.UNAVAILABLE) return constants.NGHTTP2_REFUSED_STREAM;
  if (code === GrpcStatus.INTERNAL) return constants.NGHTTP2_INTERNAL_ERROR;
  return constants.NGHTTP2_CANCEL;
}
