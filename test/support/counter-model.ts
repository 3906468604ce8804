import type { StateModel } from '../../src/shard-state/index.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A state model for tests: the state is a number, a diff adds to it. */
export const counterModel: StateModel<number, number> = {
  name: 'test-counter',
  initial: () => 0,
  apply: (s, d) => s + d,
  diff: (a, b) => b - a,
  isEmptyDiff: (d) => d === 0,
  equals: (a, b) => a === b,
  encodeState: (s) => enc.encode(String(s)),
  decodeState: (b) => Number(dec.decode(b)),
  encodeDiff: (d) => enc.encode(String(d)),
  decodeDiff: (b) => Number(dec.decode(b)),
};
