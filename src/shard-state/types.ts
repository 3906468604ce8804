/**
 * The public contract of shard state: one shared copy of each shard's state per process, kept
 * in seqno order from pubsub diffs and Consensus reads. Nothing here knows about gRPC or the
 * broker; the client SDK connects the hooks to pubsub.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Consensus } from '../consensus/index.js';
import type { Clock } from '../util/index.js';
import type { ShardStateConfig } from './config.js';

/**
 * How a shard's state evolves. `apply` must be pure: it returns a new state and never mutates
 * its arguments, so that a failed apply leaves the cached state untouched. States handed out by
 * the cache are shared between handles: treat them as read-only.
 */
export interface StateModel<S, D> {
  /** Stored in every version envelope; a reader refuses versions written by another model. */
  readonly name: string;
  /** The state at seqno 0 (a shard with no versions yet). */
  initial(): S;
  /** The state after `diff`; throws (any error) if the diff does not apply cleanly. */
  apply(state: S, diff: D): S;
  /** The diff that turns `from` into `to`: `apply(from, diff(from, to))` equals `to`. */
  diff(from: S, to: S): D;
  /** True if `diff` changes nothing (the writer then commits nothing). */
  isEmptyDiff(diff: D): boolean;
  /** Deep equality of two states (used by tests and by the writer's sanity checks). */
  equals(a: S, b: S): boolean;
  encodeState(state: S): Uint8Array;
  /** Throws on bytes it cannot read. */
  decodeState(bytes: Uint8Array): S;
  encodeDiff(diff: D): Uint8Array;
  /** Throws on bytes it cannot read. */
  decodeDiff(bytes: Uint8Array): D;
}

/** Options of the async methods of shard state. */
export interface SignalOptions {
  /** Aborts the wait or the call; it then rejects with a `ShardStateError` of code `aborted`. */
  signal?: AbortSignal | undefined;
}

/** What a state snapshot is: a state and the seqno it is at. */
export interface ShardVersion<S> {
  readonly seqno: bigint;
  readonly state: S;
}

/** An `onVersion` callback: the version just applied, and where it came from. */
export type VersionCallback<S> = (version: ShardVersion<S>, source: AppliedSource) => void;

/** What the writer's function sees besides the state. */
export interface UpdateContext {
  /** The seqno of the state passed in; the commit, if any, will be at `seqno + 1`. */
  readonly seqno: bigint;
  /** The injected clock's wall time, in milliseconds since the Unix epoch. */
  readonly nowMs: number;
  /** 1 on the first try, then 2, 3, ... after each lost compare-and-set. */
  readonly attempt: number;
}

/**
 * The writer's function: the next state from the current one, or `undefined` to change nothing.
 * It may be called several times (once per attempt) and must not mutate its input.
 */
export type UpdateFn<S> = (state: S, context: UpdateContext) => S | undefined;

export interface UpdateResult<S> {
  /** `committed`: a new version was written; `noop`: the function changed nothing. */
  readonly outcome: 'committed' | 'noop';
  /** The committed seqno, or for a noop the seqno of the state the function saw. */
  readonly seqno: bigint;
  readonly state: S;
  /** How many compare-and-sets were tried (0 for a noop on the first attempt). */
  readonly attempts: number;
}

/**
 * Whether the push path serves a shard. `refused`: the pubsub broker refused it (its shard id
 * breaks the broker's rule, a subscription limit, or the bearer token's scope), so its state
 * moves by polling only; set by the pubsub layer above (`ShardStateCache.setPubSubStatus`),
 * which shard-state only reports. `call` says what was refused: `push` (the token may not
 * publish to the shard: this process's commits reach other readers by polling, its own reads
 * keep the push path), `subscribe`, or `unknown` (both).
 */
export type PubSubShardStatus =
  | { readonly state: 'ok' }
  | {
      readonly state: 'refused';
      readonly reason: string;
      readonly error: Error;
      readonly call?: 'subscribe' | 'push' | 'unknown' | undefined;
    };

/**
 * A handle on one shard's shared state. Several handles of one cache share one state; the
 * state is released (and `onUnsubscribe` called) when the last handle closes.
 */
export interface ShardHandle<S> extends Disposable {
  readonly shardId: string;
  /** Whether pushed diffs can reach this shard; `{ state: 'ok' }` unless pubsub refused it. */
  readonly pubsubStatus: PubSubShardStatus;
  /** The current shared state (read-only). */
  readonly state: S;
  /** The seqno of `state`; 0 for a shard with no versions. */
  readonly seqno: bigint;
  /** `{ seqno, state }` read together. */
  snapshot(): ShardVersion<S>;
  /**
   * Writes a new version: computes the diff from the cached state, compare-and-sets it at
   * `seqno + 1`, applies it locally and calls the `publish` hook. A lost compare-and-set fetches
   * the newer versions and retries with backoff; an indeterminate error re-reads before deciding.
   */
  update(fn: UpdateFn<S>, options?: SignalOptions): Promise<UpdateResult<S>>;
  /**
   * Resolves once the state is at `seqno` or beyond: the moment a diff is applied (pubsub or a
   * fetch); meanwhile the polling fallback reads Consensus on the reference schedule.
   */
  waitForSeqno(seqno: bigint, options?: SignalOptions): Promise<ShardVersion<S>>;
  /** Reads Consensus now for newer versions (coalesced with any read in flight). */
  refresh(options?: SignalOptions): Promise<ShardVersion<S>>;
  /**
   * The state's changes, newest first when the consumer is slow (coalesced: seqnos strictly
   * increase but may skip). The first item is the current state. One consumer; the iterator
   * holds the shard open until the loop is left (or the handle is closed).
   */
  listen(options?: SignalOptions): AsyncIterableIterator<ShardVersion<S>>;
  /**
   * Follows every version: calls `fn` synchronously, in the call that applies it (a pushed
   * diff's receive, a Consensus read, this process's own commit), with each version applied to
   * the shared state from now on and where it came from. Seqnos strictly increase; a version
   * is skipped only when the state itself jumps over it (a reload from a rollup). Not called
   * for the current version: read `snapshot()` first. No promise, no microtask and no abort
   * listener per version: the cheapest way to follow many shards (`waitForSeqno` in a loop
   * costs a promise, a wait and a wake per version; `listen` the same).
   *
   * While a callback is registered the shard polls Consensus on the reference schedule, as it
   * does for a pending wait, so versions arrive also when pushes do not (pubsub off, a gap, a
   * disconnect). `fn` must not block: it runs inside the apply. An exception in `fn` is caught,
   * logged and counted (`persist_pubsub_state_follower_errors_total`); the version stays
   * applied and the other callbacks are still called.
   *
   * Ends when the returned function is called, when `options.signal` aborts (no error is
   * raised: the callback is just not called again), when this handle closes or the cache
   * closes. Throws `closed` on a closed handle.
   */
  onVersion(fn: VersionCallback<S>, options?: SignalOptions): () => void;
  /** Releases this handle; pending waits reject with `closed`, `onVersion` callbacks end. Idempotent. */
  close(): void;
}

/** Why Consensus was read; a metric label. */
export type ConsensusReadReason =
  | 'open'
  | 'gap'
  | 'poll'
  | 'cas_mismatch'
  | 'indeterminate'
  | 'bad_diff'
  | 'gap_notice'
  | 'reconnect'
  | 'refresh'
  | 'reload';

/** The reasons a caller of `fetchNow` may give. */
export type FetchNowReason = 'gap_notice' | 'reconnect' | 'refresh';

/** What `receiveDiff` did with a diff. */
export type ReceiveOutcome =
  /** It was the next seqno and applied (with any held diffs it unblocked). */
  | 'applied'
  /** Its seqno is at or below the current one: ignored. */
  | 'stale'
  /** It is ahead of the next seqno: held for the reorder window, then the gap is fetched. */
  | 'held'
  /**
   * It did not decode or apply cleanly (counted, logged), or too many diffs are held already:
   * the state is refetched from Consensus.
   */
  | 'refetch'
  /** No handle holds that shard in this cache: ignored. */
  | 'not_open';

export interface ReceiveDiffOptions {
  /** When the writer committed, ms since the epoch (a pubsub extension); else the envelope's. */
  originTimestampMs?: number | undefined;
  /** When the diff arrived, ms since the epoch. @default the clock's now */
  receivedAtMs?: number | undefined;
}

/** Where an applied version came from. */
export type AppliedSource = 'pubsub' | 'fetch' | 'local';

/** Reported to `hooks.onApplied` for each version applied to a shard's state. */
export interface AppliedEvent {
  readonly shardId: string;
  readonly seqno: bigint;
  readonly source: AppliedSource;
  /**
   * For `fetch`, why Consensus was read: `open` and `reload` apply old versions (their origin
   * times say nothing about latency); `poll`, `gap`, `gap_notice`, `reconnect`... are catch-up.
   * For the other sources, the source again.
   */
  readonly reason: ConsensusReadReason | 'pubsub' | 'local';
  /** The writer's commit time (ms since the epoch): the envelope's wall time or the push's. */
  readonly originTimestampMs: number;
  /** When the diff was received (pubsub) or read (fetch), ms since the epoch. */
  readonly receivedAtMs: number;
  /** When it was applied, ms since the epoch. */
  readonly appliedAtMs: number;
}

export interface PublishEvent {
  readonly shardId: string;
  readonly seqno: bigint;
  /** Exactly the bytes a receiver passes to `receiveDiff`. */
  readonly diff: Uint8Array;
  /** When the compare-and-set committed (returned), ms since the epoch. */
  readonly commitTimeMs: number;
}

/**
 * Callbacks into the client SDK. They are called synchronously; an exception is caught and
 * logged, never propagated into the cache.
 */
export interface ShardStateHooks {
  /** The first handle on `shardId` was opened: subscribe to its diffs. */
  onSubscribe?(shardId: string): void;
  /** The last handle on `shardId` was released: unsubscribe. */
  onUnsubscribe?(shardId: string): void;
  /** A version was committed by this process: push it. */
  publish?(event: PublishEvent): void;
  /** A version was applied (for commit→applied latency). */
  onApplied?(event: AppliedEvent): void;
}

export interface ShardStateCacheOptions {
  consensus: Consensus;
  /** The model shards use when `open` is given none. @default the persist-like model */
  model?: StateModel<unknown, unknown> | undefined;
  /** Timers and wall time. @default the system clock (timers unref'd) */
  clock?: Clock | undefined;
  /** Uniform in [0, 1): the jitter source. @default Math.random */
  random?: (() => number) | undefined;
  /** Metrics go here. @default a private registry */
  registry?: Registry | undefined;
  /** @default silent */
  logger?: Logger | undefined;
  /** Initial configuration; each field may be changed later with `setConfig`. */
  config?: Partial<ShardStateConfig> | undefined;
  hooks?: ShardStateHooks | undefined;
}

export interface OpenOptions extends SignalOptions {}

/** The per-process cache of shard states. */
export interface ShardStateCache {
  /**
   * A handle on `shardId`'s shared state, loaded from Consensus (the earliest live entry, a
   * rollup, forward) if no other handle holds it. A `model` other than the one the shard was
   * opened with fails with `model_mismatch`.
   */
  open<S = unknown, D = unknown>(
    shardId: string,
    model?: StateModel<S, D>,
    options?: OpenOptions,
  ): Promise<ShardHandle<S>>;
  /**
   * A diff from pubsub. `seqno` is the pushed seqno, `diff` the pushed bytes. Never throws on
   * bad input: it is counted, logged and answered by a refetch.
   */
  receiveDiff(
    shardId: string,
    seqno: bigint,
    diff: Uint8Array,
    options?: ReceiveDiffOptions,
  ): ReceiveOutcome;
  /**
   * Reads Consensus for newer versions of `shardId` (a gap notice, a reconnect): one read,
   * coalesced with any in flight. Resolves when that read has been applied; a shard that is
   * not open resolves at once. Consensus errors are logged, never rejected; an abort through
   * `signal` rejects with `aborted` (the read itself goes on for the other waiters).
   */
  fetchNow(shardId: string, reason: FetchNowReason, options?: SignalOptions): Promise<void>;
  /** Changes the configuration; a bad value throws and keeps the previous configuration. */
  setConfig(partial: Partial<ShardStateConfig>): void;
  /** The current configuration. */
  readonly config: Readonly<ShardStateConfig>;
  /** Ids of the shards some handle holds. */
  openShards(): string[];
  /**
   * The latest seqno applied to `shardId`'s shared state (what a resubscribe resumes after),
   * or undefined if no handle holds it or it has applied no version yet.
   */
  appliedSeqno(shardId: string): bigint | undefined;
  /**
   * Records what the pubsub layer says of `shardId` (every handle's `pubsubStatus` shows it,
   * until the last handle closes). No-op for a shard no handle holds.
   */
  setPubSubStatus(shardId: string, status: PubSubShardStatus): void;
  /** Closes every handle and stops every timer. Does not close the Consensus. Idempotent. */
  close(): void;
}
