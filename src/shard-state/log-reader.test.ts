import { describe, expect, it } from 'vitest';
import { encodeEnvelope } from './envelope.js';
import { foldPage, type LogCursor } from './log-reader.js';
import type { StateModel } from './types.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
/** The state is a number, a diff adds to it; a diff of 0 refuses to apply. */
const model: StateModel<number, number> = {
  name: 'log-reader-test',
  initial: () => 0,
  apply: (s, d) => {
    if (d === 0) throw new Error('does not apply');
    return s + d;
  },
  diff: (a, b) => b - a,
  isEmptyDiff: (d) => d === 0,
  equals: (a, b) => a === b,
  encodeState: (s) => enc.encode(String(s)),
  decodeState: (b) => {
    const n = Number(dec.decode(b));
    if (Number.isNaN(n)) throw new Error('not a number');
    return n;
  },
  encodeDiff: (d) => enc.encode(String(d)),
  decodeDiff: (b) => Number(dec.decode(b)),
};

/** The entry of version `seqno`: adds `diff`, with the state `rollup` if given. */
function entry(seqno: bigint, diff: number, rollup?: number | string) {
  return {
    seqno,
    data: encodeEnvelope({
      seqnoFrom: seqno - 1n,
      seqnoTo: seqno,
      wallTimeMs: Number(seqno) * 10,
      diff: model.encodeDiff(diff),
      rollup: rollup === undefined ? undefined : enc.encode(String(rollup)),
      model: model.name,
    }),
  };
}

const at = (seqno: bigint, state: number, loaded = true): LogCursor<number> => ({
  seqno,
  state,
  loaded,
});
const opts = { shardId: 's1', fromStart: false };

describe('folding a page of the log', () => {
  it('applies diffs that follow the state (fast) and skips what it already has', () => {
    const fold = foldPage(model, at(2n, 20), [entry(2n, 9), entry(3n, 1), entry(4n, 2)], opts);
    expect(fold.end).toEqual({ kind: 'continue' });
    expect(fold.steps).toEqual([
      { seqno: 3n, state: 21, wallTimeMs: 30, slow: false },
      { seqno: 4n, state: 23, wallTimeMs: 40, slow: false },
    ]);
  });

  it('opening starts at the newest rollup of the page (slow), then applies diffs', () => {
    const entries = [entry(1n, 1, 1), entry(2n, 1), entry(3n, 1, 3), entry(4n, 5)];
    const fold = foldPage(model, at(0n, 0, false), entries, opts);
    expect(fold.steps.map((s) => [s.seqno, s.state, s.slow])).toEqual([
      [3n, 3, true],
      [4n, 8, false],
    ]);
  });

  it('a diff that does not apply falls back to its rollup, and says so', () => {
    const fallbacks: bigint[] = [];
    const fold = foldPage(model, at(1n, 1), [entry(2n, 0, 42)], {
      ...opts,
      onDiffFallback: (seqno) => fallbacks.push(seqno),
    });
    expect(fold.steps).toEqual([{ seqno: 2n, state: 42, wallTimeMs: 20, slow: true }]);
    expect(fallbacks).toEqual([2n]);
  });

  it('an entry that does not follow asks for a reload; from the start it is corrupt', () => {
    const ahead = [entry(3n, 1), entry(7n, 1)];
    const fold = foldPage(model, at(2n, 2), ahead, opts);
    expect(fold.steps.map((s) => s.seqno)).toEqual([3n]);
    expect(fold.end).toEqual({ kind: 'reload', why: 'version 7 does not follow 3' });
    const again = foldPage(model, at(2n, 2), ahead, { ...opts, fromStart: true });
    expect(again.end).toMatchObject({ kind: 'failed', error: { code: 'corrupt_log' } });
  });

  it('an unreadable entry stops the fold there; the versions before it still apply', () => {
    const bad = { seqno: 4n, data: new Uint8Array([0xff, 0xff, 0xff]) };
    const fold = foldPage(model, at(2n, 2), [entry(3n, 1), bad, entry(5n, 1)], opts);
    expect(fold.steps.map((s) => s.seqno)).toEqual([3n]);
    expect(fold.end).toMatchObject({ kind: 'failed', error: { code: 'corrupt_log' } });
    // Below the state, the same entry is skipped.
    expect(foldPage(model, at(4n, 4), [bad, entry(5n, 1)], opts).end).toEqual({
      kind: 'continue',
    });
  });

  it('a diff that fails with no rollup, or a rollup that does not decode, is corrupt', () => {
    const noRollup = foldPage(model, at(1n, 1), [entry(2n, 0)], opts);
    expect(noRollup.end).toMatchObject({ kind: 'failed', error: { code: 'corrupt_log' } });
    const badRollup = foldPage(model, at(0n, 0, false), [entry(1n, 1, 'x')], opts);
    expect(badRollup.steps).toEqual([]);
    expect(badRollup.end).toMatchObject({ kind: 'failed', error: { code: 'corrupt_log' } });
  });
});
