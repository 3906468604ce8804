/**
 * The default state model: a persist-like shard state (after Materialize persist's `State`):
 * upper and since frontiers, batches, leased readers and writers. A diff is a list of field
 * diffs per field; each must apply cleanly (insert of an existing key, update or delete whose
 * old value differs from the current one: an error), as in the reference's `StateFieldDiff`.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  type Antichain,
  AntichainSchema,
  type HollowBatch as HollowBatchPb,
  HollowBatchSchema,
  type LeasedReader as LeasedReaderPb,
  LeasedReaderSchema,
  PersistStateDiffSchema,
  PersistStateSchema,
  type Writer as WriterPb,
  WriterSchema,
} from '../gen/persist_pubsub/state/v1/persist_state_pb.js';
import { deepEqual } from './deep-equal.js';
import type { StateModel } from './types.js';

/** An antichain of timestamps; `[]` is the empty antichain (closed). */
export type Frontier = readonly bigint[];

export interface HollowBatch {
  readonly lower: Frontier;
  readonly upper: Frontier;
  readonly since: Frontier;
  readonly partKeys: readonly string[];
  /** Number of updates in the batch. */
  readonly len: bigint;
}

export interface LeasedReader {
  readonly since: Frontier;
  /** The seqno the reader holds a lease on. */
  readonly seqno: bigint;
  /** Wall time, integer ms since the Unix epoch (stored as uint64). */
  readonly lastHeartbeatMs: number;
  /** Integer ms (stored as uint64). */
  readonly leaseDurationMs: number;
  readonly debug: string;
}

export interface WriterState {
  /** Wall time, integer ms since the Unix epoch (stored as uint64). */
  readonly lastHeartbeatMs: number;
  /** Integer ms (stored as uint64). */
  readonly leaseDurationMs: number;
  readonly mostRecentWriteUpper: Frontier;
  readonly debug: string;
}

export interface PersistState {
  readonly upper: Frontier;
  readonly since: Frontier;
  /** Keyed by batch id. */
  readonly batches: ReadonlyMap<string, HollowBatch>;
  /** Keyed by reader id. */
  readonly leasedReaders: ReadonlyMap<string, LeasedReader>;
  /** Keyed by writer id. */
  readonly writers: ReadonlyMap<string, WriterState>;
}

/** One field's change: insert a new key, update an existing value, or delete one. */
export type FieldDiff<V> =
  | { readonly key: string; readonly op: 'insert'; readonly value: V }
  | { readonly key: string; readonly op: 'update'; readonly old: V; readonly value: V }
  | { readonly key: string; readonly op: 'delete'; readonly old: V };

export interface PersistStateDiff {
  /** Singleton (key `""`), only ever updated. */
  readonly upper: readonly FieldDiff<Frontier>[];
  /** Singleton (key `""`), only ever updated. */
  readonly since: readonly FieldDiff<Frontier>[];
  readonly batches: readonly FieldDiff<HollowBatch>[];
  readonly leasedReaders: readonly FieldDiff<LeasedReader>[];
  readonly writers: readonly FieldDiff<WriterState>[];
}

/** Thrown by `apply` when a field diff does not apply cleanly. */
export class DiffApplyError extends Error {
  override readonly name = 'DiffApplyError';
  readonly field: string;
  readonly key: string;
  constructor(field: string, key: string, message: string) {
    super(`${field}[${JSON.stringify(key)}]: ${message}`);
    this.field = field;
    this.key = key;
  }
}

export const PERSIST_MODEL_NAME = 'persist-pubsub.persist-state.v1';

const SINGLETON_KEY = '';

/** The persist-like default model. Pure: `apply` copies what it changes. */
export const persistStateModel: StateModel<PersistState, PersistStateDiff> = {
  name: PERSIST_MODEL_NAME,
  initial: () => ({
    upper: [0n],
    since: [0n],
    batches: new Map(),
    leasedReaders: new Map(),
    writers: new Map(),
  }),
  apply(state, diff) {
    return {
      upper: applySingleton('upper', state.upper, diff.upper),
      since: applySingleton('since', state.since, diff.since),
      batches: applyMap('batches', state.batches, diff.batches),
      leasedReaders: applyMap('leasedReaders', state.leasedReaders, diff.leasedReaders),
      writers: applyMap('writers', state.writers, diff.writers),
    };
  },
  diff(from, to) {
    return {
      upper: diffSingleton(from.upper, to.upper),
      since: diffSingleton(from.since, to.since),
      batches: diffMap(from.batches, to.batches),
      leasedReaders: diffMap(from.leasedReaders, to.leasedReaders),
      writers: diffMap(from.writers, to.writers),
    };
  },
  isEmptyDiff: (d) =>
    d.upper.length +
      d.since.length +
      d.batches.length +
      d.leasedReaders.length +
      d.writers.length ===
    0,
  equals: (a, b) => deepEqual(a, b),
  encodeState(s) {
    return toBinary(
      PersistStateSchema,
      create(PersistStateSchema, {
        upper: antichainToPb(s.upper),
        since: antichainToPb(s.since),
        batches: Object.fromEntries([...s.batches].map(([k, v]) => [k, batchToPb(v)])),
        leasedReaders: Object.fromEntries([...s.leasedReaders].map(([k, v]) => [k, readerToPb(v)])),
        writers: Object.fromEntries([...s.writers].map(([k, v]) => [k, writerToPb(v)])),
      }),
    );
  },
  decodeState(bytes) {
    const pb = fromBinary(PersistStateSchema, bytes);
    return {
      upper: antichainFromPb(pb.upper),
      since: antichainFromPb(pb.since),
      batches: new Map(Object.entries(pb.batches).map(([k, v]) => [k, batchFromPb(v)])),
      leasedReaders: new Map(
        Object.entries(pb.leasedReaders).map(([k, v]) => [k, readerFromPb(v)]),
      ),
      writers: new Map(Object.entries(pb.writers).map(([k, v]) => [k, writerFromPb(v)])),
    };
  },
  encodeDiff(d) {
    return toBinary(
      PersistStateDiffSchema,
      create(PersistStateDiffSchema, {
        upper: d.upper.map((f) => fieldToPb(f, antichainToPb)),
        since: d.since.map((f) => fieldToPb(f, antichainToPb)),
        batches: d.batches.map((f) => fieldToPb(f, batchToPb)),
        leasedReaders: d.leasedReaders.map((f) => fieldToPb(f, readerToPb)),
        writers: d.writers.map((f) => fieldToPb(f, writerToPb)),
      }),
    );
  },
  decodeDiff(bytes) {
    const pb = fromBinary(PersistStateDiffSchema, bytes);
    return {
      upper: pb.upper.map((f) => fieldFromPb('upper', f, antichainFromPb)),
      since: pb.since.map((f) => fieldFromPb('since', f, antichainFromPb)),
      batches: pb.batches.map((f) => fieldFromPb('batches', f, batchFromPb)),
      leasedReaders: pb.leasedReaders.map((f) => fieldFromPb('leasedReaders', f, readerFromPb)),
      writers: pb.writers.map((f) => fieldFromPb('writers', f, writerFromPb)),
    };
  },
};

function applySingleton(
  field: string,
  current: Frontier,
  diffs: readonly FieldDiff<Frontier>[],
): Frontier {
  let value = current;
  for (const d of diffs) {
    if (d.key !== SINGLETON_KEY || d.op !== 'update') {
      throw new DiffApplyError(field, d.key, `a singleton field only takes updates of key ""`);
    }
    if (!deepEqual(value, d.old)) throw new DiffApplyError(field, d.key, 'old value differs');
    value = d.value;
  }
  return value;
}

function applyMap<V>(
  field: string,
  current: ReadonlyMap<string, V>,
  diffs: readonly FieldDiff<V>[],
): ReadonlyMap<string, V> {
  if (diffs.length === 0) return current;
  const next = new Map(current);
  for (const d of diffs) {
    const has = next.has(d.key);
    if (d.op === 'insert') {
      if (has) throw new DiffApplyError(field, d.key, 'insert of an existing key');
      next.set(d.key, d.value);
      continue;
    }
    if (!has) throw new DiffApplyError(field, d.key, `${d.op} of a missing key`);
    if (!deepEqual(next.get(d.key), d.old)) {
      throw new DiffApplyError(field, d.key, `${d.op} whose old value differs`);
    }
    if (d.op === 'update') next.set(d.key, d.value);
    else next.delete(d.key);
  }
  return next;
}

function diffSingleton(from: Frontier, to: Frontier): FieldDiff<Frontier>[] {
  return deepEqual(from, to) ? [] : [{ key: SINGLETON_KEY, op: 'update', old: from, value: to }];
}

function diffMap<V>(from: ReadonlyMap<string, V>, to: ReadonlyMap<string, V>): FieldDiff<V>[] {
  if (from === to) return [];
  const out: FieldDiff<V>[] = [];
  for (const [key, old] of from) {
    if (!to.has(key)) out.push({ key, op: 'delete', old });
    else {
      const value = to.get(key) as V;
      if (!deepEqual(old, value)) out.push({ key, op: 'update', old, value });
    }
  }
  for (const [key, value] of to) {
    if (!from.has(key)) out.push({ key, op: 'insert', value });
  }
  return out;
}

function fieldToPb<V, P>(
  f: FieldDiff<V>,
  toPb: (v: V) => P,
): { key: string; oldValue?: P; newValue?: P } {
  switch (f.op) {
    case 'insert':
      return { key: f.key, newValue: toPb(f.value) };
    case 'update':
      return { key: f.key, oldValue: toPb(f.old), newValue: toPb(f.value) };
    case 'delete':
      return { key: f.key, oldValue: toPb(f.old) };
  }
}

function fieldFromPb<V, P>(
  field: string,
  f: { key: string; oldValue?: P | undefined; newValue?: P | undefined },
  fromPb: (p: P) => V,
): FieldDiff<V> {
  if (f.oldValue === undefined && f.newValue !== undefined) {
    return { key: f.key, op: 'insert', value: fromPb(f.newValue) };
  }
  if (f.oldValue !== undefined && f.newValue !== undefined) {
    return { key: f.key, op: 'update', old: fromPb(f.oldValue), value: fromPb(f.newValue) };
  }
  if (f.oldValue !== undefined) return { key: f.key, op: 'delete', old: fromPb(f.oldValue) };
  throw new DiffApplyError(field, f.key, 'a field diff with neither an old nor a new value');
}

const antichainToPb = (f: Frontier) => create(AntichainSchema, { elements: [...f] });
const antichainFromPb = (a: Antichain | undefined): Frontier => [...(a?.elements ?? [])];

const batchToPb = (b: HollowBatch) =>
  create(HollowBatchSchema, {
    lower: antichainToPb(b.lower),
    upper: antichainToPb(b.upper),
    since: antichainToPb(b.since),
    partKeys: [...b.partKeys],
    len: b.len,
  });
const batchFromPb = (b: HollowBatchPb): HollowBatch => ({
  lower: antichainFromPb(b.lower),
  upper: antichainFromPb(b.upper),
  since: antichainFromPb(b.since),
  partKeys: [...b.partKeys],
  len: b.len,
});

const readerToPb = (r: LeasedReader) =>
  create(LeasedReaderSchema, {
    since: antichainToPb(r.since),
    seqno: r.seqno,
    lastHeartbeatMs: BigInt(r.lastHeartbeatMs),
    leaseDurationMs: BigInt(r.leaseDurationMs),
    debug: r.debug,
  });
const readerFromPb = (r: LeasedReaderPb): LeasedReader => ({
  since: antichainFromPb(r.since),
  seqno: r.seqno,
  lastHeartbeatMs: Number(r.lastHeartbeatMs),
  leaseDurationMs: Number(r.leaseDurationMs),
  debug: r.debug,
});

const writerToPb = (w: WriterState) =>
  create(WriterSchema, {
    lastHeartbeatMs: BigInt(w.lastHeartbeatMs),
    leaseDurationMs: BigInt(w.leaseDurationMs),
    mostRecentWriteUpper: antichainToPb(w.mostRecentWriteUpper),
    debug: w.debug,
  });
const writerFromPb = (w: WriterPb): WriterState => ({
  lastHeartbeatMs: Number(w.lastHeartbeatMs),
  leaseDurationMs: Number(w.leaseDurationMs),
  mostRecentWriteUpper: antichainFromPb(w.mostRecentWriteUpper),
  debug: w.debug,
});
