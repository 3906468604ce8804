/**
 * The client's outbound gRPC frames (5-byte prefix + one `ProtoPubSubMessage`), written in one
 * pass into one Buffer: no protobuf-es reflection, no intermediate message objects, one
 * allocation per frame. Field numbers are those of
 * proto/mz_persist_client/internal/service/pubsub.proto; `grpc-frames.test.ts` checks every
 * frame against the buf-generated schema.
 */

/** The 5-byte gRPC message prefix: compressed flag 0 and the big-endian length. */
export const GRPC_FRAME_HEADER_BYTES = 5;

function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let size = 5;
  for (let v = Math.floor(n / 0x800000000); v > 0; v = Math.floor(v / 128)) size++;
  return size;
}

/** Writes a non-negative safe integer as a varint. */
function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

function varintSize64(n: bigint): number {
  if (n <= BigInt(Number.MAX_SAFE_INTEGER)) return varintSize(Number(n));
  let size = 1;
  for (let v = n >> 7n; v > 0n; v >>= 7n) size++;
  return size;
}

function writeVarint64(buf: Buffer, pos: number, n: bigint): number {
  if (n <= BigInt(Number.MAX_SAFE_INTEGER)) return writeVarint(buf, pos, Number(n));
  let v = n;
  while (v >= 0x80n) {
    buf[pos++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  buf[pos++] = Number(v);
  return pos;
}

/** A `ProtoDuration` since the Unix epoch from ms (negative or non-finite taken as 0). */
interface DurationParts {
  secs: number;
  nanos: number;
  /** Encoded size of the message body. */
  size: number;
}

function durationParts(ms: number): DurationParts {
  const t = Number.isFinite(ms) && ms > 0 ? ms : 0;
  const secs = Math.floor(t / 1000);
  const nanos = Math.min(999_999_999, Math.round((t - secs * 1000) * 1e6));
  const size = (secs > 0 ? 1 + varintSize(secs) : 0) + (nanos > 0 ? 1 + varintSize(nanos) : 0);
  return { secs, nanos, size };
}

function writeDuration(buf: Buffer, pos: number, tag: number, d: DurationParts): number {
  buf[pos++] = tag;
  pos = writeVarint(buf, pos, d.size);
  if (d.secs > 0) {
    buf[pos++] = 0x08;
    pos = writeVarint(buf, pos, d.secs);
  }
  if (d.nanos > 0) {
    buf[pos++] = 0x10;
    pos = writeVarint(buf, pos, d.nanos);
  }
  return pos;
}

function frame(bodyLen: number): Buffer {
  const out = Buffer.allocUnsafe(GRPC_FRAME_HEADER_BYTES + bodyLen);
  out[0] = 0;
  out.writeUInt32BE(bodyLen, 1);
  return out;
}

/**
 * Field 1 (`timestamp`) plus one submessage in oneof field `field` that holds a shard id
 * (field 1) and optionally a uint64 (field 2): subscribe (resume seqno) and unsubscribe.
 */
function shardFrame(
  field: number,
  timestampMs: number,
  shardId: string,
  second: bigint | undefined,
): Buffer {
  const ts = durationParts(timestampMs);
  const idLen = Buffer.byteLength(shardId);
  const inner =
    (idLen > 0 ? 1 + varintSize(idLen) + idLen : 0) +
    (second !== undefined ? 1 + varintSize64(second) : 0);
  const body = 1 + varintSize(ts.size) + ts.size + 1 + varintSize(inner) + inner;
  const out = frame(body);
  let pos = writeDuration(out, GRPC_FRAME_HEADER_BYTES, 0x0a, ts);
  out[pos++] = (field << 3) | 2;
  pos = writeVarint(out, pos, inner);
  if (idLen > 0) {
    out[pos++] = 0x0a;
    pos = writeVarint(out, pos, idLen);
    pos += out.write(shardId, pos, 'utf8');
  }
  if (second !== undefined) {
    out[pos++] = 0x10;
    writeVarint64(out, pos, second);
  }
  return out;
}

/** `subscribe { shard_id, resume_after_seqno? }` stamped with `timestampMs`. */
export function subscribeFrame(
  timestampMs: number,
  shardId: string,
  resumeAfterSeqno: bigint | undefined,
): Buffer {
  return shardFrame(3, timestampMs, shardId, resumeAfterSeqno);
}

/** `unsubscribe { shard_id }` stamped with `timestampMs`. */
export function unsubscribeFrame(timestampMs: number, shardId: string): Buffer {
  return shardFrame(4, timestampMs, shardId, undefined);
}

/** `push_diff { shard_id, seqno, diff, origin_timestamp }` stamped with `timestampMs`. */
export function pushFrame(
  timestampMs: number,
  shardId: string,
  seqno: bigint,
  diff: Uint8Array,
  originTimestampMs: number,
): Buffer {
  const ts = durationParts(timestampMs);
  const origin = durationParts(originTimestampMs);
  const idLen = Buffer.byteLength(shardId);
  const inner =
    (idLen > 0 ? 1 + varintSize(idLen) + idLen : 0) +
    (seqno !== 0n ? 1 + varintSize64(seqno) : 0) +
    (diff.length > 0 ? 1 + varintSize(diff.length) + diff.length : 0) +
    1 +
    varintSize(origin.size) +
    origin.size;
  const body = 1 + varintSize(ts.size) + ts.size + 1 + varintSize(inner) + inner;
  const out = frame(body);
  let pos = writeDuration(out, GRPC_FRAME_HEADER_BYTES, 0x0a, ts);
  out[pos++] = 0x12;
  pos = writeVarint(out, pos, inner);
  if (idLen > 0) {
    out[pos++] = 0x0a;
    pos = writeVarint(out, pos, idLen);
    pos += out.write(shardId, pos, 'utf8');
  }
  if (seqno !== 0n) {
    out[pos++] = 0x10;
    pos = writeVarint64(out, pos, seqno);
  }
  if (diff.length > 0) {
    out[pos++] = 0x1a;
    pos = writeVarint(out, pos, diff.length);
    out.set(diff, pos);
    pos += diff.length;
  }
  writeDuration(out, pos, 0x22, origin);
  return out;
}
