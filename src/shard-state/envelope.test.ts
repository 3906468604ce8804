import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VersionEnvelopeSchema } from '../gen/persist_pubsub/state/v1/envelope_pb.js';
import { decodeEnvelope, EnvelopeError, encodeEnvelope } from './envelope.js';

const MAX_U64 = 2n ** 64n - 1n;

const arbEnvelope = fc.record({
  seqnoTo: fc.oneof(fc.bigInt({ min: 1n, max: 1000n }), fc.bigInt({ min: 1n, max: MAX_U64 })),
  wallTimeMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 31 }), fc.maxSafeNat()),
  diff: fc.uint8Array({ maxLength: 300 }),
  rollup: fc.option(fc.uint8Array({ maxLength: 300 }), { nil: undefined }),
  model: fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
});

function generated(e: {
  seqnoTo: bigint;
  wallTimeMs: number;
  diff: Uint8Array;
  rollup: Uint8Array | undefined;
  model: string;
}): Uint8Array {
  return toBinary(
    VersionEnvelopeSchema,
    create(VersionEnvelopeSchema, {
      seqnoFrom: e.seqnoTo - 1n,
      seqnoTo: e.seqnoTo,
      wallTimeMs: BigInt(e.wallTimeMs),
      diff: e.diff,
      ...(e.rollup === undefined ? {} : { rollup: e.rollup }),
      model: e.model,
    }),
  );
}

describe('version envelope codec', () => {
  it('encodes byte for byte as the generated schema', () => {
    fc.assert(
      fc.property(arbEnvelope, (e) => {
        const ours = encodeEnvelope({ ...e, seqnoFrom: e.seqnoTo - 1n });
        expect(Buffer.from(ours).equals(Buffer.from(generated(e)))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('decodes what the generated schema encodes, unknown fields skipped', () => {
    fc.assert(
      fc.property(arbEnvelope, fc.uint8Array({ maxLength: 20 }), (e, unknown) => {
        const known = generated(e);
        // Append unknown fields of each wire type: 7 varint, 8 fixed64, 9 bytes, 10 fixed32.
        const extra = new Uint8Array([
          0x38,
          0x96,
          0x01,
          0x41,
          ...new Uint8Array(8),
          0x4a,
          unknown.length,
          ...unknown,
          0x55,
          1,
          2,
          3,
          4,
        ]);
        const bytes = new Uint8Array([...known, ...extra]);
        const d = decodeEnvelope(bytes, e.model, e.seqnoTo);
        expect(d.seqnoFrom).toBe(e.seqnoTo - 1n);
        expect(d.seqnoTo).toBe(e.seqnoTo);
        expect(d.wallTimeMs).toBe(e.wallTimeMs);
        expect([...d.diff]).toEqual([...e.diff]);
        expect(d.rollup === undefined ? undefined : [...d.rollup]).toEqual(
          e.rollup === undefined ? undefined : [...e.rollup],
        );
        expect(d.model).toBe(e.model);
        const pb = fromBinary(VersionEnvelopeSchema, encodeEnvelope(d));
        expect(pb.seqnoTo).toBe(e.seqnoTo);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses another model, another seqno, a bad range and garbage, never anything else', () => {
    const ok = encodeEnvelope({
      seqnoFrom: 4n,
      seqnoTo: 5n,
      wallTimeMs: 1,
      diff: new Uint8Array([1]),
      rollup: undefined,
      model: 'm',
    });
    const reason = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return err instanceof EnvelopeError ? err.reason : 'other';
      }
      return 'none';
    };
    expect(reason(() => decodeEnvelope(ok, 'm', 5n))).toBe('none');
    expect(reason(() => decodeEnvelope(ok, 'n'))).toBe('decode');
    expect(reason(() => decodeEnvelope(ok, 'm', 6n))).toBe('seqno');
    const badRange = encodeEnvelope({
      seqnoFrom: 3n,
      seqnoTo: 5n,
      wallTimeMs: 1,
      diff: new Uint8Array([1]),
      rollup: undefined,
      model: 'm',
    });
    expect(reason(() => decodeEnvelope(badRange, 'm'))).toBe('seqno');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        expect(['decode', 'seqno', 'none']).toContain(reason(() => decodeEnvelope(bytes, 'm')));
      }),
      { numRuns: 2000 },
    );
    // Every truncation of a valid envelope is refused cleanly.
    for (let n = 0; n < ok.length; n++) {
      expect(['decode', 'seqno']).toContain(reason(() => decodeEnvelope(ok.subarray(0, n), 'm')));
    }
  });
});
