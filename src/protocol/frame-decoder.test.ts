import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createFrameDecoder } from './frame-decoder.js';
import { frameMessage } from './grpc.js';

function collect(chunks: Buffer[], max = 1000, inPlace = false) {
  const d = createFrameDecoder(max);
  const out: string[] = [];
  let err: unknown;
  for (const c of chunks) {
    err = inPlace
      ? d.pushInPlace(c, (b, start, end) => out.push(b.toString('hex', start, end)))
      : d.push(c, (m) => out.push(m.toString('hex')));
    if (err) break;
  }
  return { out, err, buffered: d.bufferedBytes };
}

describe('frame decoder', () => {
  it('splits messages across any chunking, as views or in place', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 10 }),
        fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 10 }),
        fc.boolean(),
        (messages, cuts, inPlace) => {
          const all = Buffer.concat(messages.map((m) => frameMessage(m)));
          const chunks: Buffer[] = [];
          let pos = 0;
          let i = 0;
          while (pos < all.length) {
            const n = cuts[i++ % cuts.length]!;
            chunks.push(all.subarray(pos, pos + n));
            pos += n;
          }
          const r = collect(chunks, 1000, inPlace);
          expect(r.err).toBeUndefined();
          expect(r.out).toEqual(messages.map((m) => Buffer.from(m).toString('hex')));
          expect(r.buffered).toBe(0);
        },
      ),
    );
  });

  it('completes a message split over chunks from just its bytes; the rest of the chunk is decoded in place', () => {
    const a = frameMessage(Buffer.alloc(30, 1));
    const b = frameMessage(Buffer.alloc(20, 2));
    const c = frameMessage(Buffer.alloc(10, 3));
    const second = Buffer.concat([a.subarray(12), b, c]);
    const d = createFrameDecoder(1000);
    const seen: Buffer[] = [];
    expect(d.push(a.subarray(0, 12), (m) => seen.push(m))).toBeUndefined();
    expect(d.bufferedBytes).toBe(12);
    expect(d.push(second, (m) => seen.push(m))).toBeUndefined();
    expect(seen.map((m) => [m.length, m[0]])).toEqual([
      [30, 1],
      [20, 2],
      [10, 3],
    ]);
    // The joined message is a buffer of its own, exactly its frame; the later ones alias `second`.
    const within = (m: Buffer | undefined, base: Buffer) =>
      m !== undefined &&
      m.buffer === base.buffer &&
      m.byteOffset >= base.byteOffset &&
      m.byteOffset + m.length <= base.byteOffset + base.length;
    expect(within(seen[0], second)).toBe(false);
    expect(seen[0]?.buffer.byteLength).toBeGreaterThanOrEqual(35);
    expect(seen[1]?.byteOffset).toBe(second.byteOffset + 23 + 5);
    expect(within(seen[1], second)).toBe(true);
    expect(within(seen[2], second)).toBe(true);
    expect(d.bufferedBytes).toBe(0);
  });

  it('in place: a whole message is its range of the chunk itself, a split one of its join', () => {
    const a = frameMessage(Buffer.alloc(30, 1));
    const b = frameMessage(Buffer.alloc(20, 2));
    const second = Buffer.concat([a.subarray(12), b]);
    const d = createFrameDecoder(1000);
    const seen: [Buffer, number, number][] = [];
    const on = (buf: Buffer, start: number, end: number) => seen.push([buf, start, end]);
    expect(d.pushInPlace(a.subarray(0, 12), on)).toBeUndefined();
    expect(d.pushInPlace(second, on)).toBeUndefined();
    expect(seen).toHaveLength(2);
    const [joined, js, je] = seen[0]!;
    expect(joined).not.toBe(second);
    expect(joined.subarray(js, je).equals(Buffer.alloc(30, 1))).toBe(true);
    // The second message: no view of its own, the chunk (from where the first one ended) itself.
    const [buf, start, end] = seen[1]!;
    expect(buf.buffer).toBe(second.buffer);
    expect(buf.byteOffset + start).toBe(second.byteOffset + 23 + 5);
    expect(buf.subarray(start, end).equals(Buffer.alloc(20, 2))).toBe(true);
    expect(d.bufferedBytes).toBe(0);
  });

  it('refuses an oversized message from its prefix, before buffering it', () => {
    const d = createFrameDecoder(10);
    const head = Buffer.from([0, 0, 0, 0, 11]);
    expect(d.push(head, () => {})).toEqual({ code: 'too_large', length: 11 });
    // Split prefix too.
    const d2 = createFrameDecoder(10);
    expect(d2.push(Buffer.from([0, 0xff]), () => {})).toBeUndefined();
    expect(d2.push(Buffer.from([0xff, 0xff, 0xff]), () => {})).toMatchObject({ code: 'too_large' });
  });

  it('reports compressed and invalid flags', () => {
    expect(collect([Buffer.from([1, 0, 0, 0, 0])]).err).toEqual({ code: 'compressed' });
    expect(collect([Buffer.from([7, 0, 0, 0, 0])]).err).toEqual({ code: 'bad_flag', flag: 7 });
  });

  it('fuzz: random chunks never throw', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 30 }), { maxLength: 8 }), (chunks) => {
        const bufs = chunks.map((c) => Buffer.from(c));
        expect(collect(bufs, 64, true)).toEqual(collect(bufs, 64));
      }),
      { numRuns: 2000 },
    );
  });
});
