/**
 * The framing of `bench floor` (`bench/floor.ts`): the writers' frames, the relay's fan-out and
 * the readers' count, on the project's gRPC length-prefixed framing (5-byte prefix,
 * `src/protocol` `frameMessage` and `createFrameDecoder`), so that the floor splits its byte
 * stream exactly as the broker and the SDK do and adds nothing of its own per frame.
 */
import {
  createFrameDecoder,
  DEFAULT_MAX_MESSAGE_BYTES,
  frameMessage,
  GRPC_FRAME_HEADER_BYTES,
} from '../src/protocol/index.js';

/** A frame of `totalBytes` on the wire (prefix included), its body filled with `x`. */
export function floorFrame(totalBytes: number): Buffer {
  if (!Number.isInteger(totalBytes) || totalBytes < GRPC_FRAME_HEADER_BYTES) {
    throw new RangeError(`a frame is at least ${GRPC_FRAME_HEADER_BYTES} bytes`);
  }
  return frameMessage(Buffer.alloc(totalBytes - GRPC_FRAME_HEADER_BYTES, 'x'));
}

/**
 * The whole frame (prefix and body) a decoder's message view came from, without a copy: the
 * decoder hands each message as a view of the buffer that holds its prefix just before it
 * (the chunk, or the joined chunks of a split frame; `floor-frames.test.ts` holds it to that).
 */
export function wholeFrame(message: Buffer): Buffer {
  return Buffer.from(
    message.buffer,
    message.byteOffset - GRPC_FRAME_HEADER_BYTES,
    message.length + GRPC_FRAME_HEADER_BYTES,
  );
}

/** Counts the frames of a byte stream (a reader floor: read and discard). */
export interface FrameCounter {
  push(chunk: Buffer): void;
  readonly frames: number;
}

export function createFrameCounter(): FrameCounter {
  const decoder = createFrameDecoder(DEFAULT_MAX_MESSAGE_BYTES);
  let frames = 0;
  const onMessage = (): void => {
    frames++;
  };
  return {
    push(chunk) {
      const err = decoder.push(chunk, onMessage);
      if (err !== undefined) throw new Error(`bad frame: ${err.code}`);
    },
    get frames() {
      return frames;
    },
  };
}

/** Where the relay writes: a reader connection (`net.Socket` in the bench). */
export interface FrameSink {
  write(frame: Buffer): unknown;
}

/** The relay floor: every frame read from any writer is written once to each reader. */
export interface FrameRelay {
  /** A new writer connection: its chunks go to `push` (one decoder per connection). */
  inbound(): (chunk: Buffer) => void;
  /** Frames read from the writers. */
  readonly received: number;
  /** `socket.write` calls made, one per frame per reader. */
  readonly delivered: number;
}

export function createFrameRelay(sinks: readonly FrameSink[]): FrameRelay {
  let received = 0;
  let delivered = 0;
  const onMessage = (message: Buffer): void => {
    received++;
    const frame = wholeFrame(message);
    for (const s of sinks) {
      s.write(frame);
      delivered++;
    }
  };
  return {
    inbound() {
      const decoder = createFrameDecoder(DEFAULT_MAX_MESSAGE_BYTES);
      return (chunk) => {
        const err = decoder.push(chunk, onMessage);
        if (err !== undefined) throw new Error(`bad frame: ${err.code}`);
      };
    },
    get received() {
      return received;
    },
    get delivered() {
      return delivered;
    },
  };
}
