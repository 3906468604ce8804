/**
 * The broker's hand-written protobuf edge for `ProtoPubSubMessage` (proto/mz_persist_client/
 * internal/service/pubsub.proto) and the gRPC length-prefixed framing.
 *
 * Why hand-written: the hot path must not decode and re-encode a whole message per subscriber.
 * `parseEnvelope` reads the tags once and, for a push, returns the shard id bytes, the seqno and
 * the raw `push_diff` bytes as a slice of the input; `encodeForwardFrame` builds the forwarded
 * gRPC frame (broker timestamp + the publisher's raw `push_diff`, so extension fields such as
 * `origin_timestamp` are forwarded verbatim) once per broadcast.
 *
 * Untrusted bytes: every function here returns a Result; none throws on any input (fuzzed in
 * `wire.test.ts`).
 */

/** Why an inbound message could not be parsed. Stable codes, used as metric labels. */
export type ParseErrorCode =
  | 'truncated'
  | 'bad_varint'
  | 'bad_wire_type'
  | 'bad_field'
  | 'length_overflow';

export interface ParseError {
  ok: false;
  code: ParseErrorCode;
  detail: string;
}

/** One inbound client message, parsed just enough to route it. */
export type Envelope =
  | {
      kind: 'push';
      /** Bytes of `push_diff.shard_id` (a view into the input). */
      shardId: Uint8Array;
      seqno: bigint;
      /** The raw `push_diff` submessage (a view into the input). */
      pushDiff: Uint8Array;
    }
  | { kind: 'subscribe'; shardId: Uint8Array; resumeAfterSeqno: bigint | undefined }
  | { kind: 'unsubscribe'; shardId: Uint8Array }
  /** A gap notice sent by a client: meaningless to the broker, ignored. */
  | { kind: 'gap' }
  /** No oneof variant set (an empty or timestamp-only message). */
  | { kind: 'empty' };

export type ParseResult<T> = { ok: true; value: T } | ParseError;

/** A push_diff decoded fully (for same-process delivery; off the hot path of gRPC peers). */
export interface DecodedPush {
  shardId: Uint8Array;
  seqno: bigint;
  diff: Uint8Array;
  /** `origin_timestamp` in ms since the Unix epoch, if the publisher sent one. */
  originTimestampMs: number | undefined;
}

const EMPTY: Uint8Array = new Uint8Array(0);

function fail(code: ParseErrorCode, detail: string): ParseError {
  return { ok: false, code, detail };
}

/**
 * A cursor over a byte range. `pos` advances; `err` is set (and parsing stops) on the first
 * problem, so the readers never throw.
 */
class Cursor {
  pos: number;
  err: ParseError | undefined = undefined;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** A varint that must fit in 32 bits unsigned (tags and lengths). */
  uint32(): number {
    const buf = this.buf;
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) {
        this.err ??= fail('truncated', 'varint runs past the end');
        return 0;
      }
      const b = buf[this.pos++]!;
      if (shift < 32) {
        result += (b & 0x7f) * 2 ** shift;
      } else if ((b & 0x7f) !== 0) {
        this.err ??= fail('length_overflow', 'varint does not fit in 32 bits');
        return 0;
      }
      if (b < 0x80) {
        if (result > 0xffffffff) {
          this.err ??= fail('length_overflow', 'varint does not fit in 32 bits');
          return 0;
        }
        return result;
      }
      shift += 7;
    }
    this.err ??= fail('bad_varint', 'varint longer than 10 bytes');
    return 0;
  }

  /** A uint64 varint. */
  uint64(): bigint {
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) {
        this.err ??= fail('truncated', 'varint runs past the end');
        return 0n;
      }
      const b = buf[this.pos++]!;
      const bits = b & 0x7f;
      if (i < 4) {
        lo += bits * 2 ** (7 * i);
      } else if (i === 4) {
        lo += (bits & 0x0f) * 2 ** 28;
        hi += bits >>> 4;
      } else {
        hi += bits * 2 ** (7 * i - 32);
      }
      if (b < 0x80) {
        if (hi === 0) return BigInt(lo);
        // Bits beyond 64 (a 10th byte > 1) wrap, as protobuf decoders do.
        return ((BigInt(hi) << 32n) | BigInt(lo)) & 0xffffffffffffffffn;
      }
    }
    this.err ??= fail('bad_varint', 'varint longer than 10 bytes');
    return 0n;
  }

  /** A length-delimited field body: returns [start, end) or undefined on error. */
  lengthDelimited(): number {
    const len = this.uint32();
    if (this.err !== undefined) return -1;
    if (len > this.end - this.pos) {
      this.err = fail('truncated', `length ${len} runs past the end`);
      return -1;
    }
    const start = this.pos;
    this.pos += len;
    return start;
  }

  /** Skips a field's value of the given wire type. */
  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.uint64();
        return;
      case 1:
        if (this.end - this.pos < 8) this.err ??= fail('truncated', 'fixed64 runs past the end');
        else this.pos += 8;
        return;
      case 2:
        this.lengthDelimited();
        return;
      case 5:
        if (this.end - this.pos < 4) this.err ??= fail('truncated', 'fixed32 runs past the end');
        else this.pos += 4;
        return;
      default:
        this.err ??= fail('bad_wire_type', `unsupported wire type ${wireType}`);
    }
  }
}

/**
 * Reads one tag; returns [fieldNumber, wireType] packed as fieldNumber * 8 + wireType, or -1 on
 * error (set on the cursor).
 */
function readTag(c: Cursor): number {
  const tag = c.uint32();
  if (c.err !== undefined) return -1;
  if (tag >>> 3 === 0) {
    c.err = fail('bad_field', 'field number 0');
    return -1;
  }
  return tag;
}

function expectWireType(c: Cursor, tag: number, wireType: number, name: string): boolean {
  if ((tag & 7) !== wireType) {
    c.err = fail('bad_wire_type', `${name} has wire type ${tag & 7}, expected ${wireType}`);
    return false;
  }
  return true;
}

/**
 * Parses a submessage that carries a shard id in field 1 and optionally a uint64 in field 2.
 * Used for push_diff (seqno), subscribe (resume_after_seqno) and unsubscribe.
 */
function parseShardMessage(
  buf: Uint8Array,
  start: number,
  end: number,
): ParseResult<{ shardId: Uint8Array; second: bigint | undefined }> {
  const c = new Cursor(buf, start, end);
  let shardId = EMPTY;
  let second: bigint | undefined;
  while (c.pos < end) {
    const tag = readTag(c);
    if (tag < 0) break;
    const field = tag >>> 3;
    if (field === 1) {
      if (!expectWireType(c, tag, 2, 'shard_id')) break;
      const s = c.lengthDelimited();
      if (s < 0) break;
      shardId = buf.subarray(s, c.pos);
    } else if (field === 2) {
      if (!expectWireType(c, tag, 0, 'seqno')) break;
      second = c.uint64();
    } else {
      c.skip(tag & 7);
    }
    if (c.err !== undefined) break;
  }
  if (c.err !== undefined) return c.err;
  return { ok: true, value: { shardId, second } };
}

/** Parses one `ProtoPubSubMessage` (the body of one gRPC frame). Never throws. */
export function parseEnvelope(buf: Uint8Array): ParseResult<Envelope> {
  const end = buf.length;
  const c = new Cursor(buf, 0, end);
  // Last oneof variant wins (protobuf semantics for a oneof seen twice).
  let variant = 0;
  let vStart = 0;
  let vEnd = 0;
  while (c.pos < end) {
    const tag = readTag(c);
    if (tag < 0) break;
    const field = tag >>> 3;
    if (field >= 2 && field <= 5) {
      if (!expectWireType(c, tag, 2, 'oneof message')) break;
      const s = c.lengthDelimited();
      if (s < 0) break;
      variant = field;
      vStart = s;
      vEnd = c.pos;
    } else {
      // Field 1 (the sender's timestamp) and unknown fields are skipped.
      c.skip(tag & 7);
    }
    if (c.err !== undefined) break;
  }
  if (c.err !== undefined) return c.err;
  switch (variant) {
    case 2: {
      const r = parseShardMessage(buf, vStart, vEnd);
      if (!r.ok) return r;
      return {
        ok: true,
        value: {
          kind: 'push',
          shardId: r.value.shardId,
          seqno: r.value.second ?? 0n,
          pushDiff: buf.subarray(vStart, vEnd),
        },
      };
    }
    case 3: {
      const r = parseShardMessage(buf, vStart, vEnd);
      if (!r.ok) return r;
      return {
        ok: true,
        value: { kind: 'subscribe', shardId: r.value.shardId, resumeAfterSeqno: r.value.second },
      };
    }
    case 4: {
      const r = parseShardMessage(buf, vStart, vEnd);
      if (!r.ok) return r;
      return { ok: true, value: { kind: 'unsubscribe', shardId: r.value.shardId } };
    }
    case 5:
      return { ok: true, value: { kind: 'gap' } };
    default:
      return { ok: true, value: { kind: 'empty' } };
  }
}

/** Decodes a raw `push_diff` fully, including the diff bytes and the origin timestamp. */
export function decodePushDiff(buf: Uint8Array): ParseResult<DecodedPush> {
  const end = buf.length;
  const c = new Cursor(buf, 0, end);
  let shardId = EMPTY;
  let seqno = 0n;
  let diff = EMPTY;
  let originTimestampMs: number | undefined;
  while (c.pos < end) {
    const tag = readTag(c);
    if (tag < 0) break;
    switch (tag >>> 3) {
      case 1: {
        if (!expectWireType(c, tag, 2, 'shard_id')) break;
        const s = c.lengthDelimited();
        if (s >= 0) shardId = buf.subarray(s, c.pos);
        break;
      }
      case 2:
        if (expectWireType(c, tag, 0, 'seqno')) seqno = c.uint64();
        break;
      case 3: {
        if (!expectWireType(c, tag, 2, 'diff')) break;
        const s = c.lengthDelimited();
        if (s >= 0) diff = buf.subarray(s, c.pos);
        break;
      }
      case 4: {
        if (!expectWireType(c, tag, 2, 'origin_timestamp')) break;
        const s = c.lengthDelimited();
        if (s < 0) break;
        const r = parseDuration(buf, s, c.pos);
        if (!r.ok) c.err = r;
        else originTimestampMs = r.value;
        break;
      }
      default:
        c.skip(tag & 7);
    }
    if (c.err !== undefined) break;
  }
  if (c.err !== undefined) return c.err;
  return { ok: true, value: { shardId, seqno, diff, originTimestampMs } };
}

/** Parses a `ProtoDuration` into milliseconds (a double; sub-ms precision kept). */
function parseDuration(buf: Uint8Array, start: number, end: number): ParseResult<number> {
  const c = new Cursor(buf, start, end);
  let secs = 0n;
  let nanos = 0;
  while (c.pos < end) {
    const tag = readTag(c);
    if (tag < 0) break;
    const field = tag >>> 3;
    if (field === 1 && (tag & 7) === 0) secs = c.uint64();
    else if (field === 2 && (tag & 7) === 0) nanos = Number(c.uint64() & 0xffffffffn);
    else c.skip(tag & 7);
    if (c.err !== undefined) break;
  }
  if (c.err !== undefined) return c.err;
  return { ok: true, value: Number(secs) * 1000 + nanos / 1e6 };
}

// ---------------------------------------------------------------------------------------------
// Encoding

function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function varintSize64(v: bigint): number {
  let n = 1;
  while (v >= 0x80n) {
    v >>= 7n;
    n++;
  }
  return n;
}

/** Writes a non-negative safe integer as a varint; returns the new position. */
function writeVarint(buf: Uint8Array, pos: number, v: number): number {
  while (v >= 0x80) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[pos++] = v;
  return pos;
}

function writeVarint64(buf: Uint8Array, pos: number, v: bigint): number {
  if (v <= 0x1fffffffffffffn) return writeVarint(buf, pos, Number(v));
  while (v >= 0x80n) {
    buf[pos++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  buf[pos++] = Number(v);
  return pos;
}

/** Size of a ProtoDuration body for a time in ms since the epoch. */
function durationParts(ms: number): { secs: number; nanos: number; size: number } {
  const secs = Math.floor(ms / 1000);
  const nanos = Math.min(999_999_999, Math.max(0, Math.round((ms - secs * 1000) * 1e6)));
  const size = (secs > 0 ? 1 + varintSize(secs) : 0) + (nanos > 0 ? 1 + varintSize(nanos) : 0);
  return { secs, nanos, size };
}

function writeDuration(buf: Uint8Array, pos: number, d: { secs: number; nanos: number }): number {
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

/** The 5-byte gRPC message prefix: compressed flag 0 and the big-endian length. */
export const GRPC_FRAME_HEADER_BYTES = 5;

/**
 * The forwarded message, as one gRPC frame: `ProtoPubSubMessage { timestamp = brokerTimeMs;
 * push_diff = <pushDiff bytes verbatim> }`. Built once per broadcast; the same Buffer is written
 * to every subscriber.
 */
export function encodeForwardFrame(pushDiff: Uint8Array, brokerTimeMs: number): Buffer {
  const d = durationParts(brokerTimeMs);
  const msgLen =
    1 + varintSize(d.size) + d.size + 1 + varintSize(pushDiff.length) + pushDiff.length;
  const out = Buffer.allocUnsafe(GRPC_FRAME_HEADER_BYTES + msgLen);
  out[0] = 0;
  out.writeUInt32BE(msgLen, 1);
  let pos = GRPC_FRAME_HEADER_BYTES;
  out[pos++] = 0x0a;
  pos = writeVarint(out, pos, d.size);
  pos = writeDuration(out, pos, d);
  out[pos++] = 0x12;
  pos = writeVarint(out, pos, pushDiff.length);
  out.set(pushDiff, pos);
  return out;
}

/** Encodes a `ProtoPushDiff` (for a push made by a same-process connection). */
export function encodePushDiff(
  shardId: Uint8Array,
  seqno: bigint,
  diff: Uint8Array,
  originTimestampMs: number | undefined,
): Uint8Array {
  const o = originTimestampMs === undefined ? undefined : durationParts(originTimestampMs);
  let size = 0;
  if (shardId.length > 0) size += 1 + varintSize(shardId.length) + shardId.length;
  if (seqno !== 0n) size += 1 + varintSize64(seqno);
  if (diff.length > 0) size += 1 + varintSize(diff.length) + diff.length;
  if (o !== undefined) size += 1 + varintSize(o.size) + o.size;
  const out = new Uint8Array(size);
  let pos = 0;
  if (shardId.length > 0) {
    out[pos++] = 0x0a;
    pos = writeVarint(out, pos, shardId.length);
    out.set(shardId, pos);
    pos += shardId.length;
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
  if (o !== undefined) {
    out[pos++] = 0x22;
    pos = writeVarint(out, pos, o.size);
    pos = writeDuration(out, pos, o);
  }
  return out;
}

/** Wraps an already-encoded protobuf message in one gRPC frame. */
export function frameMessage(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(GRPC_FRAME_HEADER_BYTES + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, GRPC_FRAME_HEADER_BYTES);
  return out;
}
