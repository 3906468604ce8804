import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createFrameDecoder } from './frame-decoder.js';
import { frameMessage } from './grpc.js';

function collect(chunks: Buffer[], max = 1000) {
  const d = createFrameDecoder(max);
  const out: string[] = [];
  let err: unknown;
  for (const c of chunks) {
    err = d.push(c, (m) => out.push(m.toString('hex')));
    if (err) break;
  }
  return { out, err, buffered: d.bufferedBytes };
}

describe('frame decoder', () => {
  it('splits messages across any chunking', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 10 }),
        fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 10 }),
        (messages, cuts) => {
          const all = Buffer.concat(messages.map((m) => frameMessage(m)));
          const chunks: Buffer[] = [];
          let pos = 0;
          let i = 0;
          while (pos < all.length) {
            const n = cuts[i++ % cuts.length]!;
            chunks.push(all.subarray(pos, pos + n));
            pos += n;
          }
          const r = collect(chunks);
          expect(r.err).toBeUndefined();
          expect(r.out).toEqual(messages.map((m) => Buffer.from(m).toString('hex')));
          expect(r.buffered).toBe(0);
        },
      ),
    );
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
        collect(
          chunks.map((c) => Buffer.from(c)),
          64,
        );
      }),
      { numRuns: 2000 },
    );
  });
});
