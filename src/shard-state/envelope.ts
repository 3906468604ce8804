/**
 * The version envelope: what each Consensus entry of a shard holds and what pubsub carries
 * (`proto/persist_pubsub/state/v1/envelope.proto`). Parsed once here, at the edge, into a typed
 * value that the rest of shard state trusts.
 *
 * Hand-written, because every pushed diff and every version read is decoded here: one result
 * object, the diff and rollup as views into the input (no copy), the model name compared as
 * bytes (no string made), seqnos read as numbers below 2^53. `envelope.test.ts` checks both
 * directions against the buf-generated schema (encode byte for byte). Unknown fields of any
 * wire type are skipped, so an envelope from a newer writer still reads.
 */

export interface Envelope {
  /** Always `seqnoTo - 1`. */
  seqnoFrom: bigint;
  seqnoTo: bigint;
  wallTimeMs: number;
  diff: Uint8Array;
  rollup: Uint8Array | undefined;
  model: string;
}

/** Why an envelope was refused. */
export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';
  /** `decode`: not an envelope of this model; `seqno`: an envelope for another seqno. */
  readonly reason: 'decode' | 'seqno';
  constructor(reason: 'decode' | 'seqno', message: string, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** The UTF-8 bytes of each model name seen (a handful per process). */
const modelBytes = new Map<string, Uint8Array>();
function bytesOfModel(model: string): Uint8Array {
  let b = modelBytes.get(model);
  if (b === undefined) {
    b = utf8.encode(model);
    if (modelBytes.size < 64) modelBytes.set(model, b);
  }
  return b;
}

// ---- encoding ------------------------------------------------------------------------------

/** Varint length of a non-negative integer below 2^64 (a number only below 2^53). */
function varintSize(v: number | bigint): number {
  if (typeof v === 'number') {
    let n = 1;
    while (v >= 128) {
      v = Math.floor(v / 128);
      n++;
    }
    return n;
  }
  let n = 1;
  while (v >= 128n) {
    v >>= 7n;
    n++;
  }
  return n;
}

function writeVarint(buf: Uint8Array, at: number, v: number | bigint): number {
  if (typeof v === 'bigint') {
    if (v <= BigInt(Number.MAX_SAFE_INTEGER)) return writeVarint(buf, at, Number(v));
    while (v >= 128n) {
      buf[at++] = Number(v & 127n) | 128;
      v >>= 7n;
    }
    buf[at++] = Number(v);
    return at;
  }
  while (v >= 128) {
    buf[at++] = (v % 128) | 128;
    v = Math.floor(v / 128);
  }
  buf[at++] = v;
  return at;
}

/** Encodes `e` exactly as the generated schema's `toBinary` does (proto3 defaults omitted). */
export function encodeEnvelope(e: Envelope): Uint8Array {
  const wall = Math.max(0, Math.trunc(e.wallTimeMs));
  const model = e.model === '' ? undefined : bytesOfModel(e.model);
  let size = 0;
  if (e.seqnoFrom !== 0n) size += 1 + varintSize(e.seqnoFrom);
  if (e.seqnoTo !== 0n) size += 1 + varintSize(e.seqnoTo);
  if (wall !== 0) size += 1 + varintSize(wall);
  if (e.diff.byteLength > 0) size += 1 + varintSize(e.diff.byteLength) + e.diff.byteLength;
  if (e.rollup !== undefined) {
    size += 1 + varintSize(e.rollup.byteLength) + e.rollup.byteLength;
  }
  if (model !== undefined) size += 1 + varintSize(model.byteLength) + model.byteLength;
  // From Node's pool (every byte is written below): a `new Uint8Array` of a few hundred bytes
  // costs a zero-filled native allocation, 3-4x the time (250-470 against 70-100 ns here).
  const buf: Uint8Array = Buffer.allocUnsafe(size);
  let at = 0;
  if (e.seqnoFrom !== 0n) {
    buf[at++] = 0x08;
    at = writeVarint(buf, at, e.seqnoFrom);
  }
  if (e.seqnoTo !== 0n) {
    buf[at++] = 0x10;
    at = writeVarint(buf, at, e.seqnoTo);
  }
  if (wall !== 0) {
    buf[at++] = 0x18;
    at = writeVarint(buf, at, wall);
  }
  const bytesField = (tag: number, b: Uint8Array): void => {
    buf[at++] = tag;
    at = writeVarint(buf, at, b.byteLength);
    buf.set(b, at);
    at += b.byteLength;
  };
  if (e.diff.byteLength > 0) bytesField(0x22, e.diff);
  if (e.rollup !== undefined) bytesField(0x2a, e.rollup);
  if (model !== undefined) bytesField(0x32, model);
  if (at !== size) throw new Error(`envelope size ${size} but ${at} bytes written`);
  return buf;
}

// ---- decoding ------------------------------------------------------------------------------

/** The read position; decoding is synchronous, so one module-level cursor serves every call. */
let pos = 0;

/**
 * Reads a varint at `pos` as a number (exact below 2^53), or -1 if malformed or truncated.
 * The position is kept in a local while reading (a module binding per byte costs).
 */
function readVarint(buf: Uint8Array, end: number): number {
  let p = pos;
  if (p < end) {
    const b0 = buf[p] as number;
    if (b0 < 0x80) {
      pos = p + 1;
      return b0;
    }
  }
  let low = 0;
  let shift = 0;
  // The first four bytes (28 bits) in int32 arithmetic.
  while (shift < 28) {
    if (p >= end) return -1;
    const b = buf[p++] as number;
    low |= (b & 0x7f) << shift;
    if (b < 0x80) {
      pos = p;
      return low >>> 0;
    }
    shift += 7;
  }
  let value = low >>> 0;
  let scale = 2 ** 28;
  for (let i = 0; i < 6; i++) {
    if (p >= end) return -1;
    const b = buf[p++] as number;
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      pos = p;
      return value;
    }
    scale *= 128;
  }
  return -1;
}

/** Reads a uint64 varint exactly, as a bigint. */
function readVarint64(buf: Uint8Array, end: number): bigint | undefined {
  const start = pos;
  const n = readVarint(buf, end);
  if (n >= 0 && n <= Number.MAX_SAFE_INTEGER) return BigInt(n);
  pos = start;
  let v = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) return undefined;
    const b = buf[pos++] as number;
    v |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return v & 0xffff_ffff_ffff_ffffn;
    shift += 7n;
  }
  return undefined;
}

function refuse(message: string): never {
  throw new EnvelopeError('decode', `the envelope does not decode: ${message}`);
}

/** Skips a field of `wireType`; refuses groups and unknown wire types. */
function skipField(buf: Uint8Array, end: number, wireType: number): void {
  switch (wireType) {
    case 0:
      if (readVarint64(buf, end) === undefined) refuse('bad varint');
      return;
    case 1:
      pos += 8;
      break;
    case 2: {
      const len = readVarint(buf, end);
      if (len < 0) refuse('bad length');
      pos += len;
      break;
    }
    case 5:
      pos += 4;
      break;
    default:
      refuse(`wire type ${wireType}`);
  }
  if (pos > end) refuse('truncated');
}

function sameBytes(a: Uint8Array, aStart: number, aEnd: number, b: Uint8Array): boolean {
  // `.length` read once: a typed array's length getter in the loop test costs ~10 ns a byte.
  const n = b.length;
  if (aEnd - aStart !== n) return false;
  for (let i = 0; i < n; i++) if (a[aStart + i] !== b[i]) return false;
  return true;
}

const EMPTY = new Uint8Array(0);

// The fields of the envelope last read by `readFields` (synchronous, like `pos`). A seqno is a
// number while exact (below 2^53), else -1 with its value in the bigint beside it.
let seqnoFromN = 0;
let seqnoFromBig = 0n;
let seqnoToN = 0;
let seqnoToBig = 0n;
let wallMs = 0;
let diffView: Uint8Array = EMPTY;
let rollupView: Uint8Array | undefined;

/** Reads seqno field 1 or 2 into its number (or, at 2^53 and above, its bigint). */
function readSeqno(bytes: Uint8Array, end: number, field: number): void {
  const start = pos;
  let n = readVarint(bytes, end);
  let big = 0n;
  if (n < 0 || n > Number.MAX_SAFE_INTEGER) {
    pos = start;
    const v = readVarint64(bytes, end);
    if (v === undefined) refuse('bad varint');
    n = -1;
    big = v;
  }
  if (field === 1) {
    seqnoFromN = n;
    seqnoFromBig = big;
  } else {
    seqnoToN = n;
    seqnoToBig = big;
  }
}

/**
 * Reads and checks an envelope into the module's fields: it must be of `model`, at
 * `expectedSeqno` if given, with `seqnoFrom + 1 === seqnoTo`. Throws `EnvelopeError` otherwise.
 */
function readFields(bytes: Uint8Array, model: string, expectedSeqno: bigint | undefined): void {
  const end = bytes.byteLength;
  pos = 0;
  seqnoFromN = 0;
  seqnoToN = 0;
  wallMs = 0;
  diffView = EMPTY;
  rollupView = undefined;
  let modelStart = 0;
  let modelEnd = 0;
  while (pos < end) {
    const tag = readVarint(bytes, end);
    if (tag < 0) refuse('bad tag');
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (field === 0) refuse('field 0');
    if (field <= 3 && wireType === 0) {
      if (field === 3) {
        // A number: exact below 2^53 ms (year 287396), which every wall time is.
        wallMs = readVarint(bytes, end);
        if (wallMs < 0) refuse('bad varint');
        continue;
      }
      readSeqno(bytes, end, field);
    } else if (field >= 4 && field <= 6 && wireType === 2) {
      const len = readVarint(bytes, end);
      if (len < 0 || pos + len > end) refuse('truncated');
      const start = pos;
      pos += len;
      if (field === 4) diffView = bytes.subarray(start, pos);
      else if (field === 5) rollupView = bytes.subarray(start, pos);
      else {
        modelStart = start;
        modelEnd = pos;
      }
    } else if (field <= 6) {
      refuse(`field ${field} has wire type ${wireType}`);
    } else {
      skipField(bytes, end, wireType);
    }
  }
  if (!sameBytes(bytes, modelStart, modelEnd, bytesOfModel(model))) {
    let name: string;
    try {
      name = utf8Decoder.decode(bytes.subarray(modelStart, modelEnd));
    } catch {
      refuse('the model name is not UTF-8');
    }
    throw new EnvelopeError(
      'decode',
      `the envelope is of model ${JSON.stringify(name)}, not ${model}`,
    );
  }
  if (seqnoFromN >= 0 && seqnoToN >= 0) {
    // Numbers, exact: `seqnoFromN + 1` is at most 2^53.
    if (seqnoToN < 1 || seqnoFromN + 1 !== seqnoToN) {
      throw new EnvelopeError('seqno', `bad seqno range ${seqnoFromN}..${seqnoToN}`);
    }
    // A bigint at or above 2^53 converts to a number at or above 2^53, never to `seqnoToN`.
    if (expectedSeqno !== undefined && Number(expectedSeqno) !== seqnoToN) {
      throw new EnvelopeError(
        'seqno',
        `the envelope is for seqno ${seqnoToN}, not ${expectedSeqno}`,
      );
    }
    return;
  }
  const from = seqnoFromN >= 0 ? BigInt(seqnoFromN) : seqnoFromBig;
  const to = seqnoToN >= 0 ? BigInt(seqnoToN) : seqnoToBig;
  if (to < 1n || from + 1n !== to) {
    throw new EnvelopeError('seqno', `bad seqno range ${from}..${to}`);
  }
  if (expectedSeqno !== undefined && to !== expectedSeqno) {
    throw new EnvelopeError('seqno', `the envelope is for seqno ${to}, not ${expectedSeqno}`);
  }
}

/**
 * Decodes and checks an envelope: it must be of `model`, at `expectedSeqno` if given, with
 * `seqnoFrom + 1 === seqnoTo`. Throws `EnvelopeError` otherwise.
 */
export function decodeEnvelope(bytes: Uint8Array, model: string, expectedSeqno?: bigint): Envelope {
  readFields(bytes, model, expectedSeqno);
  const e: Envelope = {
    seqnoFrom: seqnoFromN >= 0 ? BigInt(seqnoFromN) : seqnoFromBig,
    seqnoTo: seqnoToN >= 0 ? BigInt(seqnoToN) : seqnoToBig,
    wallTimeMs: wallMs,
    diff: diffView,
    rollup: rollupView,
    model,
  };
  forgetViews();
  return e;
}

/** Drops the module's views of the last input, so that it is not kept alive by them. */
function forgetViews(): void {
  diffView = EMPTY;
  rollupView = undefined;
}

/** What a receiver needs of a pushed envelope; the caller's, filled by `decodeEnvelopeDiff`. */
export interface EnvelopeDiff {
  diff: Uint8Array;
  wallTimeMs: number;
}

/**
 * `decodeEnvelope` for a pushed diff, into `out` (kept by the caller): the same checks, and
 * no envelope object or bigint made per diff.
 */
export function decodeEnvelopeDiff(
  bytes: Uint8Array,
  model: string,
  seqno: bigint,
  out: EnvelopeDiff,
): void {
  readFields(bytes, model, seqno);
  out.diff = diffView;
  out.wallTimeMs = wallMs;
  forgetViews();
}
