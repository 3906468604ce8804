/**
 * HTTP/2 frames (RFC 9113 §4, §6), shared by our client session (`src/client/h2`) and the
 * broker's server session: the 9-byte frame header, the frame types and flags both speak, error
 * codes, and a reader that splits a byte stream into frames. Untrusted bytes: the reader checks each frame's length against the largest frame we
 * advertised before buffering it, and never throws.
 */

export const FRAME_HEADER_BYTES = 9;
/** RFC 9113 §6.5.2: the initial and smallest SETTINGS_MAX_FRAME_SIZE. */
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
export const MAX_ALLOWED_FRAME_SIZE = 16_777_215;
/** RFC 9113 §6.9.2: the initial flow-control window of a connection and of a stream. */
export const DEFAULT_WINDOW_SIZE = 65_535;
export const MAX_WINDOW_SIZE = 0x7fff_ffff;
/** RFC 9113 §3.4: what a client sends first (a server checks it, then reads frames). */
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** RFC 9113 §7 error codes (the ones our sessions send or name). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

/** A frame as read: `payload` aliases the chunk it came in, valid until the callback returns. */
export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** Writes a frame header into `out` at `at`. */
export function writeFrameHeader(
  out: Buffer,
  at: number,
  length: number,
  type: number,
  flags: number,
  streamId: number,
): void {
  out[at] = length >>> 16;
  out[at + 1] = (length >>> 8) & 0xff;
  out[at + 2] = length & 0xff;
  out[at + 3] = type;
  out[at + 4] = flags;
  out.writeUInt32BE(streamId & MAX_WINDOW_SIZE, at + 5);
}

/** One frame with its payload copied after the header. */
export function encodeFrame(
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array = EMPTY,
): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  writeFrameHeader(out, 0, payload.length, type, flags, streamId);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

const EMPTY = new Uint8Array(0);

export function encodeSettings(settings: readonly (readonly [number, number])[]): Buffer {
  const payload = Buffer.allocUnsafe(settings.length * 6);
  settings.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, i * 6);
    payload.writeUInt32BE(value, i * 6 + 2);
  });
  return encodeFrame(FrameType.SETTINGS, 0, 0, payload);
}

export function encodeWindowUpdate(streamId: number, increment: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(increment, 0);
  return encodeFrame(FrameType.WINDOW_UPDATE, 0, streamId, payload);
}

export function encodeRstStream(streamId: number, code: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(code, 0);
  return encodeFrame(FrameType.RST_STREAM, 0, streamId, payload);
}

export function encodeGoaway(lastStreamId: number, code: number, debug = ''): Buffer {
  const text = Buffer.from(debug, 'utf8');
  const payload = Buffer.allocUnsafe(8 + text.length);
  payload.writeUInt32BE(lastStreamId, 0);
  payload.writeUInt32BE(code, 4);
  text.copy(payload, 8);
  return encodeFrame(FrameType.GOAWAY, 0, 0, payload);
}

/** Splits a byte stream into frames. */
export interface FrameReader {
  /**
   * Feeds one chunk and calls `onFrame` for each whole frame in order. Returns a description
   * of the first frame too large to accept (and reads nothing more, for good), else undefined.
   * Once `onFrame` returned `false`, nothing more is read.
   */
  push(chunk: Buffer, onFrame: (frame: Frame) => boolean | undefined): string | undefined;
}

/**
 * `maxFrameSize`: the largest payload accepted (our SETTINGS_MAX_FRAME_SIZE). `onFrame` may
 * return `false` to stop reading (the session failed): the rest of the chunk is dropped.
 */
export function createFrameReader(maxFrameSize: number): FrameReader {
  let pending: Buffer | undefined;
  let failed: string | undefined;
  let stopped = false;
  const frame: Frame = { type: 0, flags: 0, streamId: 0, payload: Buffer.alloc(0) };
  return {
    push(chunk, onFrame) {
      if (failed !== undefined) return failed;
      if (stopped) return undefined;
      const buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      pending = undefined;
      let pos = 0;
      while (buf.length - pos >= FRAME_HEADER_BYTES) {
        const length = (buf[pos]! << 16) | (buf[pos + 1]! << 8) | buf[pos + 2]!;
        if (length > maxFrameSize) {
          failed = `a frame of ${length} bytes (type ${buf[pos + 3]}) exceeds our maximum of ${maxFrameSize}`;
          return failed;
        }
        const end = pos + FRAME_HEADER_BYTES + length;
        if (end > buf.length) break;
        frame.type = buf[pos + 3]!;
        frame.flags = buf[pos + 4]!;
        frame.streamId = buf.readUInt32BE(pos + 5) & MAX_WINDOW_SIZE;
        frame.payload = buf.subarray(pos + FRAME_HEADER_BYTES, end);
        pos = end;
        if (onFrame(frame) === false) {
          stopped = true;
          return undefined;
        }
      }
      // Copy the tail: the chunk may be a large read (or a reused buffer).
      if (pos < buf.length) pending = Buffer.from(buf.subarray(pos));
      return undefined;
    },
  };
}

/**
 * A DATA or HEADERS payload without its padding (PADDED flag) and the first `extra` bytes (5 of
 * HEADERS' PRIORITY fields), or undefined when the padding does not fit (a PROTOCOL_ERROR).
 */
export function unpaddedPayload(f: Frame, extra: number): Buffer | undefined {
  let p = f.payload;
  if ((f.flags & Flag.PADDED) !== 0) {
    if (p.length < 1) return undefined;
    const pad = p[0]!;
    if (pad + 1 + extra > p.length) return undefined;
    p = p.subarray(1, p.length - pad);
  }
  if (extra > p.length) return undefined;
  return extra === 0 ? p : p.subarray(extra);
}

/** The settings of a peer's SETTINGS frame that a session applies, or its error. */
export type PeerSettings =
  | { ok: true; initialWindowSize: number | undefined; maxFrameSize: number | undefined }
  | { ok: false; code: number; message: string };

/** Reads and checks a (non-ACK) SETTINGS payload (RFC 9113 §6.5.2). */
export function readPeerSettings(payload: Buffer): PeerSettings {
  if (payload.length % 6 !== 0) {
    return {
      ok: false,
      code: ErrorCode.FRAME_SIZE_ERROR,
      message: `SETTINGS of ${payload.length} bytes`,
    };
  }
  let initialWindowSize: number | undefined;
  let maxFrameSize: number | undefined;
  for (let i = 0; i < payload.length; i += 6) {
    const id = payload.readUInt16BE(i);
    const value = payload.readUInt32BE(i + 2);
    if (id === Setting.INITIAL_WINDOW_SIZE) {
      if (value > MAX_WINDOW_SIZE) {
        return {
          ok: false,
          code: ErrorCode.FLOW_CONTROL_ERROR,
          message: `INITIAL_WINDOW_SIZE ${value}`,
        };
      }
      initialWindowSize = value;
    } else if (id === Setting.MAX_FRAME_SIZE) {
      if (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_ALLOWED_FRAME_SIZE) {
        return { ok: false, code: ErrorCode.PROTOCOL_ERROR, message: `MAX_FRAME_SIZE ${value}` };
      }
      maxFrameSize = value;
    } else if (id === Setting.ENABLE_PUSH && value > 1) {
      return { ok: false, code: ErrorCode.PROTOCOL_ERROR, message: `ENABLE_PUSH ${value}` };
    }
    // HEADER_TABLE_SIZE: our encoders never index. The others limit nothing our sessions do.
  }
  return { ok: true, initialWindowSize, maxFrameSize };
}

/**
 * Takes the first `budget` bytes of `queue` (which it shortens) as DATA frames of stream `id`,
 * each at most `maxFrameSize`, in one buffer.
 */
export function takeDataFrames(
  queue: Buffer[],
  budget: number,
  maxFrameSize: number,
  id: number,
): Buffer {
  const out = Buffer.allocUnsafe(budget + Math.ceil(budget / maxFrameSize) * FRAME_HEADER_BYTES);
  let at = 0;
  let left = budget;
  while (left > 0) {
    const n = Math.min(left, maxFrameSize);
    writeFrameHeader(out, at, n, FrameType.DATA, 0, id);
    at += FRAME_HEADER_BYTES;
    let room = n;
    while (room > 0) {
      const head = queue[0]!;
      if (head.length <= room) {
        out.set(head, at);
        at += head.length;
        room -= head.length;
        queue.shift();
      } else {
        out.set(head.subarray(0, room), at);
        at += room;
        queue[0] = head.subarray(room);
        room = 0;
      }
    }
    left -= n;
  }
  return out;
}
