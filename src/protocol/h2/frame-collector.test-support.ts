/**
 * For the HTTP/2 session tests (client and server): the frames one side wrote to an in-memory
 * socket, read back with the protocol's frame reader.
 */
import { CLIENT_PREFACE, createFrameReader } from './frame.js';

/** A frame as the test saw it, its payload copied out of the written bytes. */
export interface SeenFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/**
 * Returns a function that parses the frames in `written` added since its last call. With
 * `skipPreface`, a client preface at the start of those bytes is stepped over.
 */
export function frameCollector(
  written: readonly Buffer[],
  options: { skipPreface?: boolean } = {},
): () => SeenFrame[] {
  let consumed = 0;
  return () => {
    const all = Buffer.concat(written);
    let bytes = all.subarray(consumed);
    consumed = all.length;
    if (
      options.skipPreface === true &&
      bytes.subarray(0, CLIENT_PREFACE.length).equals(CLIENT_PREFACE)
    ) {
      bytes = bytes.subarray(CLIENT_PREFACE.length);
    }
    const out: SeenFrame[] = [];
    createFrameReader(1 << 24).push(bytes, (f) => {
      out.push({ ...f, payload: Buffer.from(f.payload) });
      return true;
    });
    return out;
  };
}
