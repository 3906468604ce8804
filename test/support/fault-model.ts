/**
 * The state model of the fault suites: each version records which writer committed it and
 * its local counter, folded into a running hash. Any diff applies (so a misapplied, doubled or
 * reordered diff is not masked by a throw but shows as a different state), and two states are
 * equal only if they fold the same diffs in the same order.
 */
import type { StateModel } from '../../src/shard-state/index.js';

export interface ChainDiff {
  /** Writer name. */
  w: string;
  /** The writer's own counter. */
  i: number;
}

export interface ChainState {
  n: number;
  h: number;
  last: ChainDiff | null;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function mix(h: number, d: ChainDiff): number {
  let x = h ^ 0x9e3779b9;
  const s = `${d.w}#${d.i}`;
  for (let i = 0; i < s.length; i++) x = Math.imul(x ^ s.charCodeAt(i), 0x01000193);
  return x >>> 0;
}

function isDiff(v: unknown): v is ChainDiff {
  const d = v as ChainDiff;
  return typeof v === 'object' && v !== null && typeof d.w === 'string' && Number.isInteger(d.i);
}

export const chainModel: StateModel<ChainState, ChainDiff> = {
  name: 'fault-test-chain.v1',
  initial: () => ({ n: 0, h: 0, last: null }),
  apply: (s, d) => {
    if (!isDiff(d)) throw new Error('not a chain diff');
    return { n: s.n + 1, h: mix(s.h, d), last: { w: d.w, i: d.i } };
  },
  diff: (_from, to) => {
    if (to.last === null) throw new Error('the target state has no last diff');
    return to.last;
  },
  isEmptyDiff: () => false,
  equals: (a, b) =>
    a.n === b.n && a.h === b.h && a.last?.w === b.last?.w && a.last?.i === b.last?.i,
  encodeState: (s) => enc.encode(JSON.stringify(s)),
  decodeState: (b) => {
    const v = JSON.parse(dec.decode(b)) as ChainState;
    if (typeof v?.n !== 'number' || typeof v.h !== 'number') throw new Error('not a chain state');
    return v;
  },
  encodeDiff: (d) => enc.encode(JSON.stringify(d)),
  decodeDiff: (b) => {
    const v: unknown = JSON.parse(dec.decode(b));
    if (!isDiff(v)) throw new Error('not a chain diff');
    return v;
  },
};

/** The update a writer makes: the next version is its counter `i`. */
export const chainStep =
  (w: string, i: number) =>
  (s: ChainState): ChainState =>
    chainModel.apply(s, { w, i });
