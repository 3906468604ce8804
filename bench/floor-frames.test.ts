/**
 * The framing of `bench floor` (`bench/floor-frames.ts`): frames of the asked size, the relay's
 * whole-frame views of the decoder's messages, the readers' count, across any chunking.
 */
import { describe, expect, it } from 'vitest';
import { createFrameDecoder, frameMessage } from '../src/protocol/index.js';
import { createFrameCounter, createFrameRelay, floorFrame, wholeFrame } from './floor-frames.js';

/** Distinct frames (body i repeated), so a mixed-up or cut frame shows. */
const frames = (n: number, bodyBytes = 20) =>
  Array.from({ length: n }, (_, i) => frameMessage(Buffer.alloc(bodyBytes + i, i + 1)));

/** The stream cut into chunks at the given byte offsets. */
function cut(stream: Buffer, at: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const a of [...at, stream.length]) {
    out.push(Buffer.from(stream.subarray(from, a)));
    from = a;
  }
  return out;
}

describe('floorFrame', () => {
  it('is a length-prefixed frame of the asked total size', () => {
    const f = floorFrame(500);
    expect(f.length).toBe(500);
    expect(f[0]).toBe(0);
    expect(f.readUInt32BE(1)).toBe(495);
  });

  it('refuses a size below the prefix', () => {
    expect(() => floorFrame(4)).toThrow(RangeError);
  });
});

describe('wholeFrame', () => {
  it("gives back each frame, prefix included, from the decoder's views, however the stream is cut", () => {
    const sent = frames(4);
    const stream = Buffer.concat(sent);
    // All in one chunk; split inside a prefix (byte 2) and inside bodies; one byte at a time.
    for (const at of [
      [],
      [2, 30, 31, 70],
      Array.from({ length: stream.length - 1 }, (_, i) => i + 1),
    ]) {
      const decoder = createFrameDecoder(1024);
      const got: Buffer[] = [];
      for (const chunk of cut(stream, at)) {
        // Copied at once: a view is valid only while the decoder's buffer is unchanged.
        decoder.push(chunk, (m) => got.push(Buffer.from(wholeFrame(m))));
      }
      expect(got).toEqual(sent);
    }
  });
});

describe('createFrameCounter', () => {
  it('counts every frame across chunk boundaries', () => {
    const stream = Buffer.concat(frames(5));
    const counter = createFrameCounter();
    for (const chunk of cut(stream, [1, 7, 50, 51, 52, 100])) counter.push(chunk);
    expect(counter.frames).toBe(5);
  });

  it('counts no frame before its last byte', () => {
    const [f] = frames(1);
    const counter = createFrameCounter();
    counter.push(f!.subarray(0, f!.length - 1));
    expect(counter.frames).toBe(0);
    counter.push(f!.subarray(f!.length - 1));
    expect(counter.frames).toBe(1);
  });

  it('throws on a stream that is not length-prefixed frames', () => {
    const counter = createFrameCounter();
    expect(() => counter.push(Buffer.from([7, 0, 0, 0, 1, 0]))).toThrow('bad frame: bad_flag');
  });
});

describe('createFrameRelay', () => {
  it('writes each frame once to every reader, whole and in order, per writer connection', () => {
    const writes: Buffer[][] = [[], []];
    const relay = createFrameRelay(
      writes.map((w) => ({ write: (b: Buffer) => w.push(Buffer.from(b)) })),
    );
    const [a, b] = [relay.inbound(), relay.inbound()];
    const [f0, f1, f2] = frames(3);
    // Two writers' partial frames interleaved: each connection has its own decoder.
    a(f0!.subarray(0, 10));
    b(f1!.subarray(0, 3));
    a(f0!.subarray(10));
    b(Buffer.concat([f1!.subarray(3), f2!]));
    expect(relay.received).toBe(3);
    expect(relay.delivered).toBe(6);
    for (const w of writes) expect(w).toEqual([f0, f1, f2]);
  });

  it('reaches the readers that joined after it was made', () => {
    const sinks: { write: (b: Buffer) => unknown }[] = [];
    const relay = createFrameRelay(sinks);
    const got: Buffer[] = [];
    sinks.push({ write: (b) => got.push(b) });
    relay.inbound()(frames(1)[0]!);
    expect(got).toHaveLength(1);
    expect(relay.delivered).toBe(1);
  });
});
