/**
 * The demo's shard state: a commit counter plus the writers' wall times of the last
 * `DEMO_STAMPS_KEPT` commits, so two states compare equal only if they went through the same
 * commits. Times are wall-clock milliseconds with sub-ms resolution (`wallMs`), comparable
 * between processes on one host.
 */
import type { StateModel } from '../shard-state/index.js';

/** Commit times kept in the state. */
export const DEMO_STAMPS_KEPT = 16;

export interface DemoState {
  /** Commits so far (equals the seqno on a shard only the demo writes). */
  readonly n: number;
  /** Commit times of commits `n - stamps.length + 1 ..= n`, ms since the epoch. */
  readonly stamps: readonly number[];
}

/** Commit number `n`, committed at `t`. */
export interface DemoDiff {
  readonly n: number;
  readonly t: number;
}

/** Wall clock in ms with sub-ms resolution. */
export const wallMs = (): number => performance.timeOrigin + performance.now();

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

function isFiniteNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function decodeJson(bytes: Uint8Array): unknown {
  return JSON.parse(dec.decode(bytes));
}

/** The next state: one more commit, stamped `t`. */
export function nextDemoState(s: DemoState, t: number): DemoState {
  const keep = s.stamps.length >= DEMO_STAMPS_KEPT ? s.stamps.slice(1) : s.stamps;
  return { n: s.n + 1, stamps: [...keep, t] };
}

export const demoModel: StateModel<DemoState, DemoDiff> = {
  name: 'persist-pubsub-demo',
  initial: () => ({ n: 0, stamps: [] }),
  apply(s, d) {
    if (d.n !== s.n + 1) throw new Error(`diff for commit ${d.n} does not follow commit ${s.n}`);
    return nextDemoState(s, d.t);
  },
  diff(a, b) {
    const t = b.stamps[b.stamps.length - 1];
    if (b.n !== a.n + 1 || t === undefined) throw new Error('the demo commits one at a time');
    return { n: b.n, t };
  },
  isEmptyDiff: () => false,
  equals: (a, b) =>
    a.n === b.n &&
    a.stamps.length === b.stamps.length &&
    a.stamps.every((t, i) => t === b.stamps[i]),
  encodeState: (s) => enc.encode(JSON.stringify(s)),
  decodeState(bytes) {
    const v = decodeJson(bytes) as Partial<DemoState> | null;
    if (
      typeof v !== 'object' ||
      v === null ||
      !Number.isSafeInteger(v.n) ||
      !Array.isArray(v.stamps) ||
      !v.stamps.every(isFiniteNumber)
    ) {
      throw new Error('not a demo state');
    }
    return { n: v.n as number, stamps: v.stamps };
  },
  encodeDiff: (d) => enc.encode(JSON.stringify(d)),
  decodeDiff(bytes) {
    const v = decodeJson(bytes) as Partial<DemoDiff> | null;
    if (typeof v !== 'object' || v === null || !Number.isSafeInteger(v.n) || !isFiniteNumber(v.t)) {
      throw new Error('not a demo diff');
    }
    return { n: v.n as number, t: v.t };
  },
};
