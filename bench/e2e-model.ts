/**
 * The end-to-end benchmark's shard state: the last commit of a shard, carrying its commit number,
 * the time it was scheduled for (so latency can be recorded against the schedule: coordinated
 * omission), the time the writer computed it, and a padding string that makes every diff
 * 100 B–1 KiB on the wire, like the reference load. Each diff is the next state; a reader that
 * observes commit n has observed every commit ≤ n of that shard.
 */
import type { StateModel } from '../src/index.js';

export interface BenchState {
  /** Commits so far on this shard. */
  readonly n: number;
  /** When commit n was scheduled, ms since the epoch (sub-ms). */
  readonly due: number;
  /** When the writer computed it (inside `update`, before the compare-and-set). */
  readonly start: number;
  readonly pad: string;
}

export type BenchDiff = BenchState;

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });
const PAD_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
/** JSON overhead of a diff besides the padding: `{"n":…,"due":…,"start":…,"pad":""}`. */
const OVERHEAD_BYTES = 64;

/** Wall clock in ms with sub-ms resolution, comparable between processes on one host. */
export const wallMs = (): number => performance.timeOrigin + performance.now();

/** Random text to cut paddings from (so that making a diff costs next to nothing). */
const PAD_SOURCE = Array.from(
  { length: 8192 },
  () => PAD_ALPHABET[Math.floor(Math.random() * PAD_ALPHABET.length)],
).join('');

/** A padding string such that the encoded diff is about `totalBytes` long (≤ 8 KiB). */
export function padFor(totalBytes: number, random: () => number = Math.random): string {
  const len = Math.min(PAD_SOURCE.length, Math.max(0, Math.round(totalBytes) - OVERHEAD_BYTES));
  const at = Math.floor(random() * (PAD_SOURCE.length - len + 1));
  return PAD_SOURCE.slice(at, at + len);
}

function parse(bytes: Uint8Array): BenchState {
  const v = JSON.parse(dec.decode(bytes)) as Partial<BenchState> | null;
  if (
    typeof v !== 'object' ||
    v === null ||
    !Number.isSafeInteger(v.n) ||
    typeof v.due !== 'number' ||
    typeof v.start !== 'number' ||
    typeof v.pad !== 'string'
  ) {
    throw new Error('not a bench state');
  }
  return v as BenchState;
}

export const benchModel: StateModel<BenchState, BenchDiff> = {
  name: 'persist-pubsub-bench-e2e',
  initial: () => ({ n: 0, due: 0, start: 0, pad: '' }),
  apply(s, d) {
    if (d.n !== s.n + 1) throw new Error(`diff for commit ${d.n} does not follow commit ${s.n}`);
    return d;
  },
  diff(a, b) {
    if (b.n !== a.n + 1) throw new Error('the bench commits one at a time');
    return b;
  },
  isEmptyDiff: () => false,
  equals: (a, b) => a.n === b.n && a.due === b.due && a.start === b.start && a.pad === b.pad,
  encodeState: (s) => enc.encode(JSON.stringify(s)),
  decodeState: parse,
  encodeDiff: (d) => enc.encode(JSON.stringify(d)),
  decodeDiff: parse,
};
