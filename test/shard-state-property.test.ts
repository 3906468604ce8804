/**
 * Property: whatever the schedule of pushed diffs (late, early, twice, never, garbage between),
 * a reader's state is always the fold of the Consensus log at its seqno, its seqnos strictly
 * increase, and it ends at the fold of the whole log.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createMemoryConsensus } from '../src/consensus/index.js';
import { decodeEnvelope } from '../src/shard-state/envelope.js';
import {
  createShardStateCache,
  type PersistState,
  type PublishEvent,
  persistStateModel,
  type ShardHandle,
  type StateModel,
} from '../src/shard-state/index.js';
import { createFakeClock } from '../src/util/index.js';

const SHARD = 's00000000-0000-0000-0000-0000000000ff';

type Op = { kind: 'add' | 'del' | 'reader' | 'writer'; key: number };
const op: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom('add', 'del', 'reader', 'writer'),
  key: fc.integer({ min: 0, max: 4 }),
});

function step(o: Op) {
  return (s: PersistState): PersistState => {
    const t = (s.upper[0] ?? 0n) + 1n;
    const next = { ...s, upper: [t] };
    const k = `k${o.key}`;
    switch (o.kind) {
      case 'add':
      case 'del': {
        const batches = new Map(s.batches);
        if (batches.has(k)) batches.delete(k);
        else batches.set(k, { lower: s.upper, upper: [t], since: [0n], partKeys: [k], len: t });
        return { ...next, batches };
      }
      case 'reader':
        return {
          ...next,
          leasedReaders: new Map(s.leasedReaders).set(k, {
            since: [t - 1n],
            seqno: t,
            lastHeartbeatMs: Number(t),
            leaseDurationMs: 1000,
            debug: '',
          }),
        };
      case 'writer':
        return {
          ...next,
          writers: new Map(s.writers).set(k, {
            lastHeartbeatMs: Number(t),
            leaseDurationMs: 1000,
            mostRecentWriteUpper: [t],
            debug: '',
          }),
        };
    }
  };
}

/** The fold of the Consensus log, computed independently of the cache. */
async function foldLog<S, D>(
  consensus: ReturnType<typeof createMemoryConsensus>,
  model: StateModel<S, D>,
) {
  const entries = await consensus.scan(SHARD, 0n, 100_000);
  let state = model.initial();
  let seqno = 0n;
  for (const e of entries) {
    const env = decodeEnvelope(e.data, model.name, e.seqno);
    if (seqno === 0n) {
      expect(env.rollup).toBeDefined();
      state = model.decodeState(env.rollup!);
    } else {
      expect(env.seqnoFrom).toBe(seqno);
      state = model.apply(state, model.decodeDiff(env.diff));
    }
    seqno = e.seqno;
  }
  return { state, seqno };
}

/**
 * A model whose `apply` never refuses (append a number): it cannot mask an ordering bug of the
 * cache the way the persist model's old-value checks would, so the cache alone must keep order.
 */
const appendModel: StateModel<readonly number[], number> = {
  name: 'test.append-log',
  initial: () => [],
  apply: (s, d) => [...s, d],
  diff: (_from, to) => to[to.length - 1]!,
  isEmptyDiff: () => false,
  equals: (a, b) => a.length === b.length && a.every((x, i) => x === b[i]),
  encodeState: (s) => new TextEncoder().encode(JSON.stringify(s)),
  decodeState(bytes) {
    const v: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) throw new Error('not a log');
    return v;
  },
  encodeDiff: (d) => new TextEncoder().encode(JSON.stringify(d)),
  decodeDiff(bytes) {
    const v: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof v !== 'number') throw new Error('not a number');
    return v;
  },
};

type Action =
  | { kind: 'deliver'; index: number }
  | { kind: 'advance'; ms: number }
  | { kind: 'garbage'; index: number; bytes: Uint8Array };

interface Schedule {
  rollupInterval: number;
  truncate: boolean;
  reorderWindowMs: number;
  /** How many times each push is delivered: 0 (never), 1 or 2. */
  copies: number[];
  extra: Action[];
  seed: number;
  openAt: number;
}

const schedule: fc.Arbitrary<Schedule> = fc.record({
  rollupInterval: fc.integer({ min: 1, max: 6 }),
  truncate: fc.boolean(),
  reorderWindowMs: fc.integer({ min: 0, max: 8 }),
  copies: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 25, maxLength: 25 }),
  extra: fc.array(
    fc.oneof(
      fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 6 }) }),
      fc.record({
        kind: fc.constant('garbage' as const),
        index: fc.nat(),
        bytes: fc.uint8Array({ maxLength: 12 }),
      }),
    ),
    { maxLength: 15 },
  ),
  seed: fc.integer({ min: 0, max: 2 ** 31 }),
  openAt: fc.nat(),
});

/**
 * Commits `updates` through a writer, opens a reader at a random point, delivers the pushes
 * on `sch`, then checks: every applied state is the fold at its seqno, seqnos strictly
 * increase, and the reader ends at the fold of the whole log.
 */
async function runSchedule<S, D>(
  model: StateModel<S, D>,
  updates: ((s: S) => S)[],
  sch: Schedule,
): Promise<void> {
  const memory = createMemoryConsensus();
  const pushes: PublishEvent[] = [];
  const { rollupInterval, truncate, reorderWindowMs } = sch;
  const writer = createShardStateCache({
    consensus: memory,
    config: { rollupInterval, truncate },
    hooks: { publish: (e) => pushes.push(e) },
  });
  const clock = createFakeClock();
  let rnd = sch.seed;
  const random = () => {
    rnd = (rnd * 1103515245 + 12345) % 2 ** 31;
    return rnd / 2 ** 31;
  };
  const expected: S[] = [model.initial()];
  const observed: bigint[] = [];
  /** What an `onVersion` callback, registered at open, was called with. */
  const followed: bigint[] = [];
  let observedAtOpen = 0;
  let handle: ShardHandle<S> | undefined;
  const failures: string[] = [];
  const reader = createShardStateCache({
    consensus: memory,
    clock,
    random,
    config: { reorderWindowMs, rollupInterval },
    hooks: {
      onApplied: (e) => {
        observed.push(e.seqno);
        const want = expected[Number(e.seqno)];
        if (handle !== undefined && (want === undefined || !model.equals(handle.state, want))) {
          failures.push(`state at ${e.seqno} differs from the fold`);
        }
      },
    },
  });
  // The reader opens after `opensAfter` commits (from the earliest live rollup).
  const opensAfter = sch.openAt % (updates.length + 1);
  const openReader = async () => {
    await new Promise((res) => setImmediate(res)); // let best-effort truncation run
    handle = await reader.open(SHARD, model);
    expect(handle.seqno).toBe(BigInt(opensAfter));
    expect(model.equals(handle.state, expected[opensAfter]!)).toBe(true);
    observedAtOpen = observed.length;
    handle.onVersion((v, source) => {
      followed.push(v.seqno);
      const want = expected[Number(v.seqno)];
      if (want === undefined || !model.equals(v.state, want) || v.state !== handle?.state) {
        failures.push(`onVersion at ${v.seqno} (${source}) is not the fold`);
      }
    });
  };
  const w = await writer.open(SHARD, model);
  for (const [i, u] of updates.entries()) {
    if (i === opensAfter) await openReader();
    const r = await w.update(u);
    expected[Number(r.seqno)] = r.state;
  }
  if (opensAfter === updates.length) await openReader();
  await new Promise((res) => setImmediate(res)); // let best-effort truncation run
  if (handle === undefined) throw new Error('unreachable: the reader is open');

  // The schedule: each push delivered 0, 1 or 2 times, shuffled with clock advances and
  // garbage, by a seeded shuffle.
  const actions: Action[] = [...sch.extra];
  pushes.forEach((_, index) => {
    for (let c = 0; c < (sch.copies[index] ?? 1); c++) actions.push({ kind: 'deliver', index });
  });
  for (let i = actions.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [actions[i], actions[j]] = [actions[j]!, actions[i]!];
  }
  for (const a of actions) {
    if (a.kind === 'advance') await clock.advance(a.ms);
    else if (a.kind === 'deliver') {
      const p = pushes[a.index]!;
      reader.receiveDiff(SHARD, p.seqno, p.diff);
    } else {
      const p = pushes[a.index % pushes.length]!;
      reader.receiveDiff(SHARD, p.seqno, a.bytes);
    }
  }
  const head = BigInt(pushes.length);
  let done = false;
  const wait = handle.waitForSeqno(head).then(() => {
    done = true;
  });
  for (let i = 0; i < 200 && !done; i++) await clock.advance(500);
  await wait;

  expect(failures).toEqual([]);
  // The callback saw exactly the versions applied since it was registered, in order.
  expect(followed).toEqual(observed.slice(observedAtOpen));
  expect(followed.at(-1) ?? BigInt(opensAfter)).toBe(head);
  for (let i = 1; i < observed.length; i++) {
    expect(observed[i]! > observed[i - 1]!).toBe(true);
  }
  const fold = await foldLog(memory, model);
  expect(fold.seqno).toBe(head);
  expect(handle.seqno).toBe(head);
  expect(model.equals(handle.state, fold.state)).toBe(true);
  expect(model.equals(handle.state, expected[updates.length]!)).toBe(true);
  reader.close();
  writer.close();
}

const RUNS = Number(process.env.PERSIST_PUBSUB_PROPERTY_RUNS ?? 80);

describe('shard state under random delivery schedules', () => {
  it('persist model: always the fold of the Consensus log, ending at the whole fold', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), schedule, (ops, sch) =>
        runSchedule(persistStateModel, ops.map(step), sch),
      ),
      { numRuns: RUNS },
    );
  }, 120_000);

  it('a model that never refuses a diff: the cache alone keeps the order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 25 }), schedule, (n, sch) =>
        runSchedule(
          appendModel,
          Array.from({ length: n }, () => (s: readonly number[]) => [...s, s.length]),
          sch,
        ),
      ),
      { numRuns: RUNS },
    );
  }, 120_000);
});
