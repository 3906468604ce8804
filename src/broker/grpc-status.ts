/**
 * gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html) and the
 * percent-encoding of `grpc-message` (gRPC over HTTP/2 spec: printable ASCII except `%` is sent
 * as is, everything else as `%XX` of its UTF-8 bytes).
 */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  INTERNAL: 13,
  UNIMPLEMENTED: 12,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/** A status to end a call with. */
export interface CallStatus {
  code: GrpcStatusCode;
  message: string;
}

export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    if (byte >= 0x20 && byte <= 0x7e && byte !== 0x25) out += String.fromCharCode(byte);
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The name of a code, for logs and metric labels. */
export function statusName(code: number): string {
  for (const [name, value] of Object.entries(GrpcStatus)) if (value === code) return name;
  return String(code);
}
