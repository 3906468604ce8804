import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DiffApplyError,
  type HollowBatch,
  persistStateModel as model,
  type PersistState,
  type PersistStateDiff,
} from './persist-model.js';

const frontier = fc.array(fc.bigInt({ min: 0n, max: 1n << 40n }), { maxLength: 2 });
const batch: fc.Arbitrary<HollowBatch> = fc.record({
  lower: frontier,
  upper: frontier,
  since: frontier,
  partKeys: fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }),
  len: fc.bigInt({ min: 0n, max: 1000n }),
});
const ms = fc.integer({ min: 0, max: 2 ** 40 });
const state: fc.Arbitrary<PersistState> = fc.record({
  upper: frontier,
  since: frontier,
  batches: fc
    .dictionary(fc.constantFrom('a', 'b', 'c', 'd'), batch)
    .map((d) => new Map(Object.entries(d))),
  leasedReaders: fc
    .dictionary(
      fc.constantFrom('r1', 'r2', 'r3'),
      fc.record({
        since: frontier,
        seqno: fc.bigInt({ min: 0n, max: 100n }),
        lastHeartbeatMs: ms,
        leaseDurationMs: ms,
        debug: fc.string({ maxLength: 4 }),
      }),
    )
    .map((d) => new Map(Object.entries(d))),
  writers: fc
    .dictionary(
      fc.constantFrom('w1', 'w2'),
      fc.record({
        lastHeartbeatMs: ms,
        leaseDurationMs: ms,
        mostRecentWriteUpper: frontier,
        debug: fc.string({ maxLength: 4 }),
      }),
    )
    .map((d) => new Map(Object.entries(d))),
});

const emptyDiff: PersistStateDiff = {
  upper: [],
  since: [],
  batches: [],
  leasedReaders: [],
  writers: [],
};

describe('persist state model', () => {
  it('apply(from, diff(from, to)) equals to, through the encodings, for any two states', () => {
    fc.assert(
      fc.property(state, state, (from, to) => {
        const d = model.decodeDiff(model.encodeDiff(model.diff(from, to)));
        const got = model.apply(from, d);
        expect(model.equals(got, to)).toBe(true);
        expect(model.isEmptyDiff(d)).toBe(model.equals(from, to));
        expect(model.equals(model.decodeState(model.encodeState(to)), to)).toBe(true);
      }),
    );
  });

  it('apply is pure: the input state is unchanged, also when apply fails', () => {
    fc.assert(
      fc.property(state, state, (from, to) => {
        const before = model.encodeState(from);
        model.apply(from, model.diff(from, to));
        try {
          model.apply(to, model.diff(from, to)); // usually does not apply cleanly
        } catch {}
        expect(model.encodeState(from)).toEqual(before);
      }),
    );
  });

  it('refuses an insert of an existing key, and updates or deletes whose old value differs', () => {
    const s0 = model.initial();
    const b: HollowBatch = { lower: [0n], upper: [1n], since: [0n], partKeys: ['p'], len: 1n };
    const s1 = model.apply(s0, { ...emptyDiff, batches: [{ key: 'k', op: 'insert', value: b }] });
    expect(s1.batches.get('k')).toEqual(b);
    expect(() =>
      model.apply(s1, { ...emptyDiff, batches: [{ key: 'k', op: 'insert', value: b }] }),
    ).toThrow(DiffApplyError);
    const other = { ...b, len: 2n };
    expect(() =>
      model.apply(s1, {
        ...emptyDiff,
        batches: [{ key: 'k', op: 'update', old: other, value: b }],
      }),
    ).toThrow(/old value differs/);
    expect(() =>
      model.apply(s1, { ...emptyDiff, batches: [{ key: 'k', op: 'delete', old: other }] }),
    ).toThrow(/old value differs/);
    expect(() =>
      model.apply(s1, { ...emptyDiff, batches: [{ key: 'missing', op: 'delete', old: b }] }),
    ).toThrow(/missing key/);
    expect(() =>
      model.apply(s1, { ...emptyDiff, upper: [{ key: '', op: 'update', old: [5n], value: [6n] }] }),
    ).toThrow(/old value differs/);
    expect(() =>
      model.apply(s1, { ...emptyDiff, upper: [{ key: '', op: 'insert', value: [6n] }] }),
    ).toThrow(/singleton/);
    const s2 = model.apply(s1, { ...emptyDiff, batches: [{ key: 'k', op: 'delete', old: b }] });
    expect(s2.batches.size).toBe(0);
    expect(s1.batches.size).toBe(1);
  });

  it('decoding garbage throws rather than returning a state', () => {
    expect(() => model.decodeDiff(new Uint8Array([0xff, 0xff, 0xff]))).toThrow();
    expect(() => model.decodeState(new Uint8Array([0x0a, 0x05, 0x01]))).toThrow();
  });
});
