/**
 * The hand-written codec of `ProtoPubSubMessage` (proto/mz_persist_client/internal/service/
 * pubsub.proto): every process that speaks the wire (broker, gRPC and NATS clients, the NATS
 * bridge) decodes and encodes with it; `codec.test.ts` checks it against the buf-generated schema
 * in both directions (byte-for-byte on encode).
 *
 * Why hand-written: the broker and the SDK decode every message, so a decode costs one result
 * object and the strings and bigints it must hand out — no reflection, no intermediate message
 * tree, no cursor object (the cursor is module state: decoding is synchronous), no BigInt
 * arithmetic for a seqno below 2^53 — and a push keeps the offsets of its raw `push_diff` bytes,
 * which the broker forwards verbatim (extension fields included) behind its own timestamp.
 *
 * Untrusted bytes: `decodeMessage` never throws; a malformed message is a `DecodeError` with a
 * stable code. Unknown fields (of any wire type) are skipped, so a newer peer's extensions pass.
 * Shard ids are decoded as latin1 (one character per byte): exact for every id `parseShardId`
 * accepts, and a non-ASCII id is refused there, byte by byte, instead of being re-encoded.
 */
import { GRPC_FRAME_HEADER_BYTES } from './grpc.js';
import { DEFAULT_MAX_SHARD_ID_BYTES, parseShardId } from './shard-id.js';

/** Why an inbound message could not be decoded. Stable codes, used as metric labels. */
export type DecodeErrorCode =
  | 'truncated'
  | 'bad_varint'
  | 'bad_wire_type'
  | 'bad_field'
  | 'length_overflow'
  | 'seqno_range';

export interface DecodeError {
  kind: 'error';
  code: DecodeErrorCode;
  detail: string;
}

/** `ProtoGapReason`, by name; an unknown number is `unknown`. */
export type GapReason = 'unknown' | 'slow_consumer' | 'resume_unavailable' | 'not_forwarding';
/** `ProtoRefusalReason`, by name; an unknown number is `unknown`. */
export type RefusalReason =
  | 'unknown'
  | 'invalid_shard_id'
  | 'subscription_limit'
  | 'permission_denied';
/** `ProtoRefusedCall`, by name: which call a refusal is about; `unknown` (unset) means both. */
export type RefusedCall = 'unknown' | 'subscribe' | 'push';

const GAP_REASONS: readonly GapReason[] = [
  'unknown',
  'slow_consumer',
  'resume_unavailable',
  'not_forwarding',
];
const REFUSAL_REASONS: readonly RefusalReason[] = [
  'unknown',
  'invalid_shard_id',
  'subscription_limit',
  'permission_denied',
];
const REFUSED_CALLS: readonly RefusedCall[] = ['unknown', 'subscribe', 'push'];

/**
 * A decoded `push_diff`. `diff` and `pushDiff` are views into the decoded bytes, made only when
 * read (the broker forwards `pushDiff` without ever reading `diff`).
 */
export class PushMessage {
  readonly kind = 'push';
  constructor(
    /** The decoded bytes, or a chunk they are in (the views below alias them). */
    readonly bytes: Uint8Array,
    /** The sender's `timestamp`, ms since the Unix epoch, if set. */
    readonly timestampMs: number | undefined,
    /** `shard_id`, latin1 (unvalidated: pass it to `parseShardId`). */
    readonly shardId: string,
    readonly seqno: bigint,
    /** `origin_timestamp` (the writer's commit time), ms since the Unix epoch, if set. */
    readonly originTimestampMs: number | undefined,
    /**
     * `shardId` is known to pass `parseShardId` at `DEFAULT_MAX_SHARD_ID_BYTES` (the codec's id
     * cache checked it when it took it in); false only means not known: check it.
     */
    readonly shardIdValid: boolean,
    private readonly diffStart: number,
    private readonly diffEnd: number,
    private readonly pushDiffStart: number,
    private readonly pushDiffEnd: number,
  ) {}

  /**
   * The `diff` bytes: a plain `Uint8Array` view, even of a `Buffer` (a `Buffer`'s `subarray`
   * constructs through Node's `FastBuffer` class, and so does every `subarray` of its result,
   * such as the envelope's view of the model's diff: two of the six views a pushed diff took on
   * its way from the socket read).
   */
  get diff(): Uint8Array {
    const b = this.bytes;
    return new Uint8Array(b.buffer, b.byteOffset + this.diffStart, this.diffEnd - this.diffStart);
  }

  /**
   * The raw `ProtoPushDiff` submessage, for verbatim forwarding: a plain `Uint8Array` view, as
   * `diff` (the broker takes one per push; a `Buffer`'s `subarray` was ~5 % of its CPU at
   * fan-out 1 with Node's `FastBuffer` construction).
   */
  get pushDiff(): Uint8Array {
    const b = this.bytes;
    return new Uint8Array(
      b.buffer,
      b.byteOffset + this.pushDiffStart,
      this.pushDiffEnd - this.pushDiffStart,
    );
  }

  /** Length of the raw `ProtoPushDiff` submessage, in bytes. */
  get pushDiffLength(): number {
    return this.pushDiffEnd - this.pushDiffStart;
  }
}

export interface SubscribeMessage {
  kind: 'subscribe';
  timestampMs: number | undefined;
  shardId: string;
  /** Extension: the subscriber already has every seqno up to this one. */
  resumeAfterSeqno: bigint | undefined;
}

export interface UnsubscribeMessage {
  kind: 'unsubscribe';
  timestampMs: number | undefined;
  shardId: string;
}

/** Extension: the broker could not deliver some diffs of `shardId`. */
export interface GapMessage {
  kind: 'gap';
  timestampMs: number | undefined;
  shardId: string;
  reason: GapReason;
  /** The lowest seqno that may be missing (0 if unknown). */
  fromSeqno: bigint;
  /** How many diffs were not delivered (0 if unknown). */
  dropped: number;
}

/** Extension: the broker refused one subscribe or push of `shardId`; the stream stays open. */
export interface RefusalMessage {
  kind: 'refused';
  timestampMs: number | undefined;
  shardId: string;
  reason: RefusalReason;
  detail: string;
  /** Which call was refused (`unknown`: a broker that does not say; take it as both). */
  call: RefusedCall;
}

/** No oneof variant set (an empty or timestamp-only message). */
export interface EmptyMessage {
  kind: 'empty';
  timestampMs: number | undefined;
}

export type PubSubMessage =
  | PushMessage
  | SubscribeMessage
  | UnsubscribeMessage
  | GapMessage
  | RefusalMessage
  | EmptyMessage;

export type DecodeResult = PubSubMessage | DecodeError;

// ---------------------------------------------------------------------------------------------
// Decoding. The cursor is module state: `pos`, and the last varint as two uint32 halves.

let pos = 0;
let vlo = 0;
let vhi = 0;
let errCode: DecodeErrorCode | undefined;
let errDetail = '';

const latin1Slice = (
  Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, s: number, e: number): string }
).latin1Slice;
const utf8 = new TextDecoder('utf-8');

function fail(code: DecodeErrorCode, detail: string): false {
  if (errCode === undefined) {
    errCode = code;
    errDetail = detail;
  }
  return false;
}

/** Reads a varint into `vlo`/`vhi` (bits beyond 64 wrap, as protobuf decoders do). */
function readVarint(buf: Uint8Array, end: number): boolean {
  if (pos >= end) return fail('truncated', 'varint runs past the end');
  let b = buf[pos++]!;
  if (b < 0x80) {
    vlo = b;
    vhi = 0;
    return true;
  }
  let lo = b & 0x7f;
  for (let shift = 7; shift < 28; shift += 7) {
    if (pos >= end) return fail('truncated', 'varint runs past the end');
    b = buf[pos++]!;
    lo |= (b & 0x7f) << shift;
    if (b < 0x80) {
      vlo = lo >>> 0;
      vhi = 0;
      return true;
    }
  }
  if (pos >= end) return fail('truncated', 'varint runs past the end');
  b = buf[pos++]!;
  lo |= (b & 0x0f) << 28;
  let hi = (b & 0x7f) >> 4;
  if (b < 0x80) {
    vlo = lo >>> 0;
    vhi = hi;
    return true;
  }
  for (let shift = 3; shift < 32; shift += 7) {
    if (pos >= end) return fail('truncated', 'varint runs past the end');
    b = buf[pos++]!;
    hi |= (b & 0x7f) << shift;
    if (b < 0x80) {
      vlo = lo >>> 0;
      vhi = hi >>> 0;
      return true;
    }
  }
  return fail('bad_varint', 'varint longer than 10 bytes');
}

/** A varint that must fit in 32 bits (tags and lengths), in `vlo`. */
function readUint32(buf: Uint8Array, end: number): boolean {
  if (!readVarint(buf, end)) return false;
  if (vhi !== 0) return fail('length_overflow', 'varint does not fit in 32 bits');
  return true;
}

/** Reads a length prefix; the body is [pos, pos + vlo) afterwards (pos not advanced). */
function readLength(buf: Uint8Array, end: number): boolean {
  if (!readUint32(buf, end)) return false;
  if (vlo > end - pos) return fail('truncated', `length ${vlo} runs past the end`);
  return true;
}

/** Reads a tag into `vlo`; field number 0 is malformed. */
function readTag(buf: Uint8Array, end: number): boolean {
  if (!readUint32(buf, end)) return false;
  if (vlo >>> 3 === 0) return fail('bad_field', 'field number 0');
  return true;
}

function skip(buf: Uint8Array, end: number, wireType: number): boolean {
  switch (wireType) {
    case 0:
      return readVarint(buf, end);
    case 1:
      if (end - pos < 8) return fail('truncated', 'fixed64 runs past the end');
      pos += 8;
      return true;
    case 2:
      if (!readLength(buf, end)) return false;
      pos += vlo;
      return true;
    case 5:
      if (end - pos < 4) return fail('truncated', 'fixed32 runs past the end');
      pos += 4;
      return true;
    default:
      return fail('bad_wire_type', `unsupported wire type ${wireType}`);
  }
}

function wrongType(tag: number, name: string, expected: number): false {
  return fail('bad_wire_type', `${name} has wire type ${tag & 7}, expected ${expected}`);
}

/** The last varint as a seqno; refuses one above MAX_SEQNO (2^63-1, high bit set). */
function seqnoOfVarint(name: string): bigint | undefined {
  if (vhi === 0) return BigInt(vlo);
  if (vhi > 0x7fffffff) {
    fail('seqno_range', `${name} is above 2^63-1`);
    return undefined;
  }
  if (vhi < 0x200000) return BigInt(vhi * 0x100000000 + vlo);
  return (BigInt(vhi) << 32n) | BigInt(vlo);
}

/**
 * Shard ids recently decoded, direct-mapped by a hash of their bytes: a process sees the same
 * few thousand ids over and over, so most decodes return the string made last time (no native
 * call, no allocation, and a string whose hash V8 has already computed for the Map lookups that
 * follow). Bounded: `ID_CACHE_SLOTS` strings of at most `ID_CACHE_MAX_BYTES` characters.
 */
const ID_CACHE_SLOTS = 4096;
const ID_CACHE_MAX_BYTES = 64;
const idCacheStrings: string[] = new Array<string>(ID_CACHE_SLOTS).fill('');
/**
 * The bytes of each cached string, compared as bytes (~3x cheaper than `charCodeAt`): slot i's
 * at `i * ID_CACHE_MAX_BYTES` of one flat array, and in `idCacheMeta` its length (0: empty)
 * with `ID_VALID` set if the string passes the shard id rule at the default limit (checked once,
 * when the slot takes it). A hit reads one line of bytes and the meta byte, where a `Uint8Array`
 * per slot was two cold loads more per message and the rule a `Set` lookup (in a reader
 * following a thousand shards every id is cold).
 */
const idCacheBytes = new Uint8Array(ID_CACHE_SLOTS * ID_CACHE_MAX_BYTES);
const idCacheMeta = new Uint8Array(ID_CACHE_SLOTS);
const ID_VALID = 0x80;
/** Whether the id `latin1` returned last is known valid (`PushMessage.shardIdValid`). */
let latin1Valid = false;

function latin1(buf: Uint8Array, start: number, end: number): string {
  latin1Valid = false;
  const n = end - start;
  if (n === 0) return '';
  if (n > ID_CACHE_MAX_BYTES) return latin1Slice.call(buf, start, end);
  // FNV-1a over the length and the last 16 bytes (where ids differ: `s` + UUID); the full
  // compare below makes a collision a miss, never a wrong id.
  let h = Math.imul(0x811c9dc5 ^ n, 0x01000193);
  for (let i = n > 16 ? end - 16 : start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  const slot = (h >>> 0) & (ID_CACHE_SLOTS - 1);
  const at = slot * ID_CACHE_MAX_BYTES;
  const meta = idCacheMeta[slot]!;
  if ((meta & ~ID_VALID) === n) {
    let i = 0;
    while (i < n && idCacheBytes[at + i] === buf[start + i]) i++;
    if (i === n) {
      latin1Valid = (meta & ID_VALID) !== 0;
      return idCacheStrings[slot]!;
    }
  }
  const str = latin1Slice.call(buf, start, end);
  idCacheStrings[slot] = str;
  // A copy: the input may be a view of a large chunk that is reused or should be collected.
  idCacheBytes.set(buf.subarray(start, end), at);
  latin1Valid = parseShardId(str, DEFAULT_MAX_SHARD_ID_BYTES).ok;
  idCacheMeta[slot] = latin1Valid ? n | ID_VALID : n;
  return str;
}

/** `ProtoPubSubMessage` oneof field numbers. */
const VARIANT_PUSH = 2;
const VARIANT_SUBSCRIBE = 3;
const VARIANT_UNSUBSCRIBE = 4;
const VARIANT_GAP = 5;
const VARIANT_REFUSED = 6;

// Fields of the submessages, filled by `readFields` (module state, reset per call).
let fShardStart = 0;
let fShardEnd = 0;
let fSeqno: bigint | undefined;
let fBytesStart = 0;
let fBytesEnd = 0;
let fDurationMs: number | undefined;
let fNumber = 0;
let fCount = 0;

/** Parses a `ProtoDuration` body in [start, end) into ms. */
function readDurationMs(buf: Uint8Array, start: number, end: number): number | undefined {
  const saved = pos;
  pos = start;
  let secs = 0;
  let nanos = 0;
  while (pos < end) {
    if (!readTag(buf, end)) return undefined;
    const tag = vlo;
    const field = tag >>> 3;
    if (field === 1 && (tag & 7) === 0) {
      if (!readVarint(buf, end)) return undefined;
      secs = vhi * 0x100000000 + vlo;
    } else if (field === 2 && (tag & 7) === 0) {
      if (!readVarint(buf, end)) return undefined;
      nanos = vlo;
    } else if (field === 1 || field === 2) {
      wrongType(tag, field === 1 ? 'secs' : 'nanos', 0);
      return undefined;
    } else if (!skip(buf, end, tag & 7)) return undefined;
  }
  pos = saved;
  return secs * 1000 + nanos / 1e6;
}

/**
 * Reads the fields of a push_diff (1 shard_id, 2 seqno, 3 diff, 4 origin_timestamp), a
 * subscribe (1, 2 resume_after_seqno), an unsubscribe (1), a gap notice (1, 2 reason as
 * `fNumber`, 3 from_seqno, 4 dropped) or a refusal (1, 2 reason, 3 detail, 4 call as
 * `fCount`) in [start, end).
 */
function readFields(buf: Uint8Array, start: number, end: number, variant: number): boolean {
  pos = start;
  fShardStart = 0;
  fShardEnd = 0;
  fSeqno = undefined;
  fBytesStart = 0;
  fBytesEnd = 0;
  fDurationMs = undefined;
  fNumber = 0;
  fCount = 0;
  while (pos < end) {
    if (!readTag(buf, end)) return false;
    const tag = vlo;
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === 1) {
      if (wt !== 2) return wrongType(tag, 'shard_id', 2);
      if (!readLength(buf, end)) return false;
      fShardStart = pos;
      pos += vlo;
      fShardEnd = pos;
    } else if (field === 2 && variant <= VARIANT_SUBSCRIBE) {
      if (wt !== 0) return wrongType(tag, variant === VARIANT_PUSH ? 'seqno' : 'resume', 0);
      if (!readVarint(buf, end)) return false;
      fSeqno = seqnoOfVarint(variant === VARIANT_PUSH ? 'seqno' : 'resume_after_seqno');
      if (fSeqno === undefined) return false;
    } else if (field === 2 && (variant === VARIANT_GAP || variant === VARIANT_REFUSED)) {
      if (wt !== 0) return wrongType(tag, 'reason', 0);
      if (!readVarint(buf, end)) return false;
      fNumber = vlo | 0;
    } else if (field === 3 && (variant === VARIANT_PUSH || variant === VARIANT_REFUSED)) {
      if (wt !== 2) return wrongType(tag, variant === VARIANT_PUSH ? 'diff' : 'detail', 2);
      if (!readLength(buf, end)) return false;
      fBytesStart = pos;
      pos += vlo;
      fBytesEnd = pos;
    } else if (field === 3 && variant === VARIANT_GAP) {
      if (wt !== 0) return wrongType(tag, 'from_seqno', 0);
      if (!readVarint(buf, end)) return false;
      fSeqno = seqnoOfVarint('from_seqno');
      if (fSeqno === undefined) return false;
    } else if (field === 4 && variant === VARIANT_PUSH) {
      if (wt !== 2) return wrongType(tag, 'origin_timestamp', 2);
      if (!readLength(buf, end)) return false;
      const s = pos;
      pos += vlo;
      fDurationMs = readDurationMs(buf, s, pos);
      if (fDurationMs === undefined) return false;
    } else if (field === 4 && (variant === VARIANT_GAP || variant === VARIANT_REFUSED)) {
      if (wt !== 0) return wrongType(tag, variant === VARIANT_GAP ? 'dropped' : 'call', 0);
      if (!readVarint(buf, end)) return false;
      fCount = vhi * 0x100000000 + vlo;
    } else if (!skip(buf, end, wt)) return false;
  }
  return true;
}

function decodeError(): DecodeError {
  const e: DecodeError = { kind: 'error', code: errCode ?? 'bad_field', detail: errDetail };
  errCode = undefined;
  errDetail = '';
  return e;
}

/**
 * Decodes one `ProtoPubSubMessage` (the body of one gRPC frame, or one NATS message): all of
 * `buf`, or its bytes [`start`, `end`) (a message in place in a chunk: no view made for it; a
 * push's `bytes` are then all of `buf`). Never throws. For a oneof variant seen twice, the last
 * one wins.
 */
export function decodeMessage(buf: Uint8Array, start = 0, end = buf.length): DecodeResult {
  errCode = undefined;
  pos = start;
  let tsStart = -1;
  let tsEnd = -1;
  let variant = 0;
  let vStart = 0;
  let vEnd = 0;
  while (pos < end) {
    if (!readTag(buf, end)) return decodeError();
    const tag = vlo;
    const field = tag >>> 3;
    if (field >= VARIANT_PUSH && field <= VARIANT_REFUSED) {
      if ((tag & 7) !== 2) {
        wrongType(tag, 'oneof message', 2);
        return decodeError();
      }
      if (!readLength(buf, end)) return decodeError();
      variant = field;
      vStart = pos;
      pos += vlo;
      vEnd = pos;
    } else if (field === 1 && (tag & 7) === 2) {
      if (!readLength(buf, end)) return decodeError();
      tsStart = pos;
      pos += vlo;
      tsEnd = pos;
    } else if (!skip(buf, end, tag & 7)) return decodeError();
  }
  let timestampMs: number | undefined;
  if (tsStart >= 0) {
    timestampMs = readDurationMs(buf, tsStart, tsEnd);
    if (timestampMs === undefined) return decodeError();
  }
  if (variant === 0) return { kind: 'empty', timestampMs };
  if (!readFields(buf, vStart, vEnd, variant)) return decodeError();
  const shardId = latin1(buf, fShardStart, fShardEnd);
  switch (variant) {
    case VARIANT_PUSH:
      return new PushMessage(
        buf,
        timestampMs,
        shardId,
        fSeqno ?? 0n,
        fDurationMs,
        latin1Valid,
        fBytesStart,
        fBytesEnd,
        vStart,
        vEnd,
      );
    case VARIANT_SUBSCRIBE:
      return { kind: 'subscribe', timestampMs, shardId, resumeAfterSeqno: fSeqno };
    case VARIANT_UNSUBSCRIBE:
      return { kind: 'unsubscribe', timestampMs, shardId };
    case VARIANT_GAP:
      return {
        kind: 'gap',
        timestampMs,
        shardId,
        reason: GAP_REASONS[fNumber] ?? 'unknown',
        fromSeqno: fSeqno ?? 0n,
        dropped: fCount,
      };
    default:
      return {
        kind: 'refused',
        timestampMs,
        shardId,
        reason: REFUSAL_REASONS[fNumber] ?? 'unknown',
        detail: fBytesEnd > fBytesStart ? utf8.decode(buf.subarray(fBytesStart, fBytesEnd)) : '',
        call: (fCount < REFUSED_CALLS.length ? REFUSED_CALLS[fCount] : undefined) ?? 'unknown',
      };
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding. Field order and presence match protobuf-es's `toBinary` (proto3: zero scalars and
// empty strings/bytes omitted, an explicit `optional` written when set), so our bytes equal the
// generated encoder's (checked in codec.test.ts).

function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  let n = 5;
  v = Math.floor(v / 0x800000000);
  while (v > 0) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function varintSize64(v: bigint): number {
  const n = Number(v);
  if (n < 2 ** 53) return varintSize(n);
  let size = 1;
  while (v >= 0x80n) {
    v >>= 7n;
    size++;
  }
  return size;
}

/** Writes a non-negative safe integer as a varint; returns the new position. */
function writeVarint(out: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    out[at++] = (v & 0x7f) | 0x80;
    v = v < 0x100000000 ? v >>> 7 : Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}

function writeVarint64(out: Uint8Array, at: number, v: bigint): number {
  const n = Number(v);
  if (n < 2 ** 53) return writeVarint(out, at, n);
  while (v >= 0x80n) {
    out[at++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  out[at++] = Number(v);
  return at;
}

// The last duration split by `splitDuration` (module state: no object per encode).
let dSecs = 0;
let dNanos = 0;

/** Splits ms since the epoch (negative or non-finite as 0); returns the ProtoDuration body size. */
function splitDuration(ms: number): number {
  const t = Number.isFinite(ms) && ms > 0 ? ms : 0;
  dSecs = Math.floor(t / 1000);
  dNanos = Math.min(999_999_999, Math.max(0, Math.round((t - dSecs * 1000) * 1e6)));
  return (dSecs > 0 ? 1 + varintSize(dSecs) : 0) + (dNanos > 0 ? 1 + varintSize(dNanos) : 0);
}

function writeDuration(out: Uint8Array, at: number): number {
  if (dSecs > 0) {
    out[at++] = 0x08;
    at = writeVarint(out, at, dSecs);
  }
  if (dNanos > 0) {
    out[at++] = 0x10;
    at = writeVarint(out, at, dNanos);
  }
  return at;
}

/**
 * The UTF-8 bytes of a string field. Shard ids repeat: those of at most `ID_CACHE_MAX_BYTES`
 * are kept (bounded: the map is cleared when it holds `ID_CACHE_SLOTS`), so an encode copies
 * cached bytes instead of walking the string.
 */
const encodedIds = new Map<string, Uint8Array>();
const NO_BYTES = new Uint8Array(0);

function bytesOf(s: string): Uint8Array {
  if (s.length === 0) return NO_BYTES;
  let b = encodedIds.get(s);
  if (b !== undefined) return b;
  b = Buffer.from(s, 'utf8');
  if (s.length <= ID_CACHE_MAX_BYTES) {
    if (encodedIds.size >= ID_CACHE_SLOTS) encodedIds.clear();
    encodedIds.set(s, b);
  }
  return b;
}

/** Size of a length-delimited field with a body of `n` bytes (tag of one byte). */
function lenFieldSize(n: number): number {
  return 1 + varintSize(n) + n;
}

/** Size of a string field (omitted when empty, as proto3 does). */
function stringFieldSize(bytes: Uint8Array): number {
  return bytes.length > 0 ? lenFieldSize(bytes.length) : 0;
}

/** Writes a string field (tag of one byte) unless empty; returns the new position. */
function writeStringField(out: Buffer, at: number, tag: number, bytes: Uint8Array): number {
  const n = bytes.length;
  if (n === 0) return at;
  out[at++] = tag;
  at = writeVarint(out, at, n);
  out.set(bytes, at);
  return at + n;
}

/** Writes a varint field (tag of one byte) unless 0; returns the new position. */
function writeVarintField(out: Uint8Array, at: number, tag: number, v: number): number {
  if (v === 0) return at;
  out[at++] = tag;
  return writeVarint(out, at, v);
}

// The position after the envelope written by `envelope` (module state: no pair per encode).
let bodyAt = 0;

/**
 * Allocates one message (with the gRPC prefix if `framed`) and writes the envelope: the
 * `timestamp` (unless undefined) and the tag and length of the oneof variant `variantTag`, whose
 * body of `bodyLen` bytes the caller writes from `bodyAt`.
 */
function envelope(
  variantTag: number,
  bodyLen: number,
  timestampMs: number | undefined,
  framed: boolean,
): Buffer {
  const hasTs = timestampMs !== undefined;
  const tsSize = hasTs ? splitDuration(timestampMs) : 0;
  const msgLen = (hasTs ? lenFieldSize(tsSize) : 0) + lenFieldSize(bodyLen);
  const head = framed ? GRPC_FRAME_HEADER_BYTES : 0;
  const out = Buffer.allocUnsafe(head + msgLen);
  let at = 0;
  if (framed) {
    out[0] = 0;
    out.writeUInt32BE(msgLen, 1);
    at = head;
  }
  if (hasTs) {
    out[at++] = 0x0a;
    at = writeVarint(out, at, tsSize);
    at = writeDuration(out, at);
  }
  out[at++] = variantTag;
  bodyAt = writeVarint(out, at, bodyLen);
  return out;
}

const TAG_PUSH_DIFF = 0x12;
const TAG_SUBSCRIBE = 0x1a;
const TAG_UNSUBSCRIBE = 0x22;
const TAG_GAP = 0x2a;
const TAG_REFUSED = 0x32;

/** Size of a `ProtoPushDiff` body. */
function pushDiffSize(
  shardId: Uint8Array,
  seqno: bigint,
  diffLen: number,
  originTimestampMs: number | undefined,
): number {
  let size = stringFieldSize(shardId);
  if (seqno !== 0n) size += 1 + varintSize64(seqno);
  if (diffLen > 0) size += lenFieldSize(diffLen);
  if (originTimestampMs !== undefined) size += lenFieldSize(splitDuration(originTimestampMs));
  return size;
}

function writePushDiff(
  out: Buffer,
  at: number,
  shardId: Uint8Array,
  seqno: bigint,
  diff: Uint8Array,
  originTimestampMs: number | undefined,
): void {
  at = writeStringField(out, at, 0x0a, shardId);
  if (seqno !== 0n) {
    out[at++] = 0x10;
    at = writeVarint64(out, at, seqno);
  }
  if (diff.length > 0) {
    out[at++] = 0x1a;
    at = writeVarint(out, at, diff.length);
    out.set(diff, at);
    at += diff.length;
  }
  if (originTimestampMs !== undefined) {
    const size = splitDuration(originTimestampMs);
    out[at++] = 0x22;
    at = writeVarint(out, at, size);
    writeDuration(out, at);
  }
}

/**
 * `ProtoPubSubMessage { timestamp, push_diff { shard_id, seqno, diff, origin_timestamp } }`;
 * `framed` prepends the 5-byte gRPC prefix. `timestampMs` undefined leaves `timestamp` unset.
 */
export function encodePush(
  shardId: string,
  seqno: bigint,
  diff: Uint8Array,
  originTimestampMs: number | undefined,
  timestampMs: number | undefined,
  framed: boolean,
): Buffer {
  const id = bytesOf(shardId);
  const body = pushDiffSize(id, seqno, diff.length, originTimestampMs);
  const out = envelope(TAG_PUSH_DIFF, body, timestampMs, framed);
  writePushDiff(out, bodyAt, id, seqno, diff, originTimestampMs);
  return out;
}

/** A bare `ProtoPushDiff` (no envelope): what `PushMessage.pushDiff` holds. */
export function encodePushDiff(
  shardId: string,
  seqno: bigint,
  diff: Uint8Array,
  originTimestampMs: number | undefined,
): Buffer {
  const id = bytesOf(shardId);
  const out = Buffer.allocUnsafe(pushDiffSize(id, seqno, diff.length, originTimestampMs));
  writePushDiff(out, 0, id, seqno, diff, originTimestampMs);
  return out;
}

/**
 * The `timestamp` field (tag, length, `ProtoDuration`) of the last forward written, for the
 * timestamp `fwdTsMs` (module state: the broker stamps every diff of one turn with the same
 * time, so a forward writes these bytes, it does not split a duration).
 */
let fwdTsMs: number | undefined;
let fwdTsLen = 0;
const fwdTs = new Uint8Array(16);

function forwardTimestamp(timestampMs: number | undefined): number {
  if (timestampMs === fwdTsMs && fwdTsMs !== undefined) return fwdTsLen;
  fwdTsMs = timestampMs;
  if (timestampMs === undefined) {
    fwdTsLen = 0;
    return 0;
  }
  const size = splitDuration(timestampMs);
  fwdTs[0] = 0x0a;
  fwdTsLen = writeDuration(fwdTs, writeVarint(fwdTs, 1, size));
  return fwdTsLen;
}

/** Length of `encodeForward(pushDiff, timestampMs, framed)` for a `pushDiffLength`-byte push_diff. */
export function forwardLength(
  pushDiffLength: number,
  timestampMs: number | undefined,
  framed: boolean,
): number {
  const msgLen = forwardTimestamp(timestampMs) + lenFieldSize(pushDiffLength);
  return (framed ? GRPC_FRAME_HEADER_BYTES : 0) + msgLen;
}

/**
 * Writes `encodeForward(pushDiff, timestampMs, framed)` into `out` at `at` (which has room for
 * `forwardLength` bytes): the broker's forwarded message, straight into where it is written,
 * with no buffer of its own. Returns the position after it.
 */
export function writeForward(
  out: Uint8Array,
  at: number,
  pushDiff: Uint8Array,
  timestampMs: number | undefined,
  framed: boolean,
): number {
  const n = pushDiff.length;
  const tsLen = forwardTimestamp(timestampMs);
  if (framed) {
    const msgLen = tsLen + lenFieldSize(n);
    out[at] = 0;
    out[at + 1] = msgLen >>> 24;
    out[at + 2] = (msgLen >>> 16) & 0xff;
    out[at + 3] = (msgLen >>> 8) & 0xff;
    out[at + 4] = msgLen & 0xff;
    at += GRPC_FRAME_HEADER_BYTES;
  }
  for (let i = 0; i < tsLen; i++) out[at++] = fwdTs[i]!;
  out[at++] = TAG_PUSH_DIFF;
  at = writeVarint(out, at, n);
  out.set(pushDiff, at);
  return at + n;
}

/**
 * `ProtoPubSubMessage { timestamp, push_diff = <pushDiff verbatim> }`: the broker's forwarded
 * message, from the publisher's raw `push_diff` bytes, in a buffer of its own (`writeForward`
 * writes the same bytes into a caller's).
 */
export function encodeForward(
  pushDiff: Uint8Array,
  timestampMs: number | undefined,
  framed: boolean,
): Buffer {
  const out = Buffer.allocUnsafe(forwardLength(pushDiff.length, timestampMs, framed));
  writeForward(out, 0, pushDiff, timestampMs, framed);
  return out;
}

/** `ProtoPubSubMessage { timestamp, subscribe { shard_id, resume_after_seqno } }`. */
export function encodeSubscribe(
  shardId: string,
  resumeAfterSeqno: bigint | undefined,
  timestampMs: number | undefined,
  framed: boolean,
): Buffer {
  const id = bytesOf(shardId);
  let body = stringFieldSize(id);
  // `optional`: written when set, even as 0.
  if (resumeAfterSeqno !== undefined) body += 1 + varintSize64(resumeAfterSeqno);
  const out = envelope(TAG_SUBSCRIBE, body, timestampMs, framed);
  const at = writeStringField(out, bodyAt, 0x0a, id);
  if (resumeAfterSeqno !== undefined) {
    out[at] = 0x10;
    writeVarint64(out, at + 1, resumeAfterSeqno);
  }
  return out;
}

/** `ProtoPubSubMessage { timestamp, unsubscribe { shard_id } }`. */
export function encodeUnsubscribe(
  shardId: string,
  timestampMs: number | undefined,
  framed: boolean,
): Buffer {
  const id = bytesOf(shardId);
  const out = envelope(TAG_UNSUBSCRIBE, stringFieldSize(id), timestampMs, framed);
  writeStringField(out, bodyAt, 0x0a, id);
  return out;
}

const GAP_REASON_NUMBER: Record<GapReason, number> = {
  unknown: 0,
  slow_consumer: 1,
  resume_unavailable: 2,
  not_forwarding: 3,
};

/** `ProtoPubSubMessage { timestamp, gap { shard_id, reason, from_seqno, dropped } }`. */
export function encodeGap(
  shardId: string,
  reason: GapReason,
  fromSeqno: bigint,
  dropped: number,
  timestampMs: number | undefined,
  framed: boolean,
): Buffer {
  const id = bytesOf(shardId);
  const r = GAP_REASON_NUMBER[reason] ?? 0;
  const n = Number.isSafeInteger(dropped) && dropped > 0 ? dropped : 0;
  let body = stringFieldSize(id);
  if (r !== 0) body += 1 + varintSize(r);
  if (fromSeqno !== 0n) body += 1 + varintSize64(fromSeqno);
  if (n !== 0) body += 1 + varintSize(n);
  const out = envelope(TAG_GAP, body, timestampMs, framed);
  let at = writeStringField(out, bodyAt, 0x0a, id);
  at = writeVarintField(out, at, 0x10, r);
  if (fromSeqno !== 0n) {
    out[at++] = 0x18;
    at = writeVarint64(out, at, fromSeqno);
  }
  writeVarintField(out, at, 0x20, n);
  return out;
}

const REFUSAL_REASON_NUMBER: Record<RefusalReason, number> = {
  unknown: 0,
  invalid_shard_id: 1,
  subscription_limit: 2,
  permission_denied: 3,
};
const REFUSED_CALL_NUMBER: Record<RefusedCall, number> = { unknown: 0, subscribe: 1, push: 2 };

/** `ProtoPubSubMessage { timestamp, refused { shard_id, reason, detail, call } }`. */
export function encodeRefusal(
  shardId: string,
  reason: RefusalReason,
  detail: string,
  timestampMs: number | undefined,
  framed: boolean,
  call: RefusedCall = 'unknown',
): Buffer {
  const id = bytesOf(shardId);
  const detailBytes = Buffer.from(detail, 'utf8');
  const r = REFUSAL_REASON_NUMBER[reason] ?? 0;
  const c = REFUSED_CALL_NUMBER[call] ?? 0;
  let body = stringFieldSize(id) + stringFieldSize(detailBytes);
  if (r !== 0) body += 1 + varintSize(r);
  if (c !== 0) body += 1 + varintSize(c);
  const out = envelope(TAG_REFUSED, body, timestampMs, framed);
  let at = writeStringField(out, bodyAt, 0x0a, id);
  at = writeVarintField(out, at, 0x10, r);
  at = writeStringField(out, at, 0x1a, detailBytes);
  writeVarintField(out, at, 0x20, c);
  return out;
}
