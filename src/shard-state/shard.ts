/**
 * One shard's shared state in one process. The cache owns one `Shard` per shard id and hands
 * out handles on it. The shard composes four parts, each with its own state and test:
 * - `ReorderBuffer`: pushed diffs held ahead of the next seqno, and the gap they leave;
 * - `foldPage` (log-reader): which Consensus entries apply, and how (fast, slow, reload);
 * - `PollSchedule`: a waiting reader's polling fallback;
 * - `WriterLoop`: compare-and-set, retry, publish.
 * What stays here is the wiring: receiving, coalesced Consensus reads, the waiters and the
 * followers (`follow`: called synchronously with every applied version).
 *
 * Invariant: `#state` is always the fold of the Consensus log up to `#seqno`. Every change goes
 * through `#advance`, and a new state is computed (by a pure `apply`) before it replaces the old
 * one, so a diff that fails leaves the state as it was.
 */
import type { Logger } from 'pino';
import { type Consensus, ConsensusError } from '../consensus/index.js';
import type { AbortWatcher, Clock, CounterCell, Timer } from '../util/index.js';
import { releaseAbort, unwatchAbort, watchAbort } from '../util/index.js';

import type { BackgroundQueue } from './background-queue.js';
import { pollDelayMs, type ShardStateConfig } from './config.js';
import { decodeEnvelopeDiff, type EnvelopeDiff, EnvelopeError } from './envelope.js';
import { ShardStateError } from './errors.js';
import { foldPage, type PageEnd } from './log-reader.js';
import type { FetchPath, ShardCells, ShardStateMetrics } from './metrics.js';
import { PollSchedule, type PollScheduleDeps } from './poll-schedule.js';
import { ReorderBuffer } from './reorder-buffer.js';
import type {
  AppliedSource,
  ConsensusReadReason,
  ReceiveDiffOptions,
  ReceiveOutcome,
  ShardStateHooks,
  ShardVersion,
  StateModel,
  UpdateFn,
  UpdateResult,
  VersionCallback,
} from './types.js';
import { type Wait, WaitList, type Wakeable, type WakeQueue } from './waiters.js';
import { type WriterHost, WriterLoop } from './writer-loop.js';

/**
 * What a shard needs of its cache: one object for every shard of the cache (not a copy per
 * shard), so that the first load of it in an update hits memory that the cache's other shards
 * keep warm. (A copy per shard was a cold cache line per update: in a reader following a
 * thousand shards, the first load of it took a fifth of `#advance`'s samples.)
 */
export interface ShardDeps {
  consensus: Consensus;
  clock: Clock;
  /** The poll schedules' clock, timers (one clock timer for the cache), jitter and config. */
  poll: PollScheduleDeps;
  /** Wakes satisfied waits once per run of applies, for every shard of the cache. */
  wakes: WakeQueue;
  /** The cache's best-effort work (truncations), a few tasks per turn. */
  background: BackgroundQueue;
  random: () => number;
  logger: Logger;
  metrics: ShardStateMetrics;
  hooks: ShardStateHooks;
  config: () => Readonly<ShardStateConfig>;
}

interface Held<D> {
  diff: D;
  originMs: number;
  receivedAtMs: number;
}

const RESOLVED: Promise<void> = Promise.resolve();
const noop = (): void => {};
const EMPTY = new Uint8Array(0);

/**
 * The writer loop's view of its shard. A class, not an object literal with getters: V8 keeps
 * such a literal in dictionary mode (`%HasFastProperties` false), so each of a commit's loads
 * of `seqno`, `state`, `closed` and the hooks was a dictionary lookup.
 */
class ShardWriterHost<S> implements WriterHost<S> {
  readonly shardId: string;
  readonly #shard: { readonly seqno: bigint; readonly state: S; readonly closed: boolean };
  readonly applyCommitted: WriterHost<S>['applyCommitted'];
  readonly readAfterMismatch: WriterHost<S>['readAfterMismatch'];
  readonly publish: WriterHost<S>['publish'];

  constructor(
    shard: {
      readonly shardId: string;
      readonly seqno: bigint;
      readonly state: S;
      readonly closed: boolean;
    },
    hooks: Pick<WriterHost<S>, 'applyCommitted' | 'readAfterMismatch' | 'publish'>,
  ) {
    this.shardId = shard.shardId;
    this.#shard = shard;
    this.applyCommitted = hooks.applyCommitted;
    this.readAfterMismatch = hooks.readAfterMismatch;
    this.publish = hooks.publish;
  }

  get seqno(): bigint {
    return this.#shard.seqno;
  }

  get state(): S {
    return this.#shard.state;
  }

  get closed(): boolean {
    return this.#shard.closed;
  }
}

/** A pending `waitFor`; its abort goes to the shard's handler (no closure per wait). */
class Waiter<S> implements Wait<ShardVersion<S>> {
  /** Watched through the shard's own watch of `signal` (see `Shard.#watch`), not its own. */
  viaShard = false;
  constructor(
    readonly seqno: bigint,
    readonly owner: object | undefined,
    readonly signal: AbortSignal | undefined,
    readonly resolve: (value: ShardVersion<S>) => void,
    readonly reject: (err: unknown) => void,
    readonly onAborted: (w: Waiter<S>, reason: unknown) => void,
  ) {}

  onAbort(reason: unknown): void {
    this.onAborted(this, reason);
  }
}

/** A `follow` registration; its abort goes to the shard (no closure per follower). */
class Follower<S> implements AbortWatcher {
  /** Cleared when it is removed: a removal during a notification skips it at once. */
  active = true;
  constructor(
    readonly fn: VersionCallback<S>,
    readonly owner: object | undefined,
    readonly signal: AbortSignal | undefined,
    readonly onAborted: (f: Follower<S>) => void,
  ) {}

  onAbort(): void {
    this.onAborted(this);
  }
}

/** No followers (the usual shard): shared, never written. */
const NO_FOLLOWERS: readonly never[] = Object.freeze([]);

/** The envelope being received (decoding is synchronous: one for every shard). */
const received: EnvelopeDiff = { diff: EMPTY, wallTimeMs: 0 };

/** The resolving functions of the promise being made (a module-level executor: no closure). */
let madeResolve: ((value: never) => void) | undefined;
let madeReject: ((err: unknown) => void) | undefined;
function capture(resolve: (value: never) => void, reject: (err: unknown) => void): void {
  madeResolve = resolve;
  madeReject = reject;
}

export class Shard<S, D> implements Wakeable {
  readonly shardId: string;
  readonly model: StateModel<S, D>;
  readonly #d: ShardDeps;
  readonly #log: Logger;
  /** This shard's counters, each in a field (no object of cells to load per update). */
  readonly #applied: CounterCell;
  readonly #stale: CounterCell;
  readonly #outOfOrder: CounterCell;
  #seqno = 0n;
  #state: S;
  #loaded = false;
  #closed = false;

  readonly #held = new ReorderBuffer<Held<D>>();
  #reorderTimer: Timer | undefined;
  /** Consecutive failed Consensus reads; spaces out gap retries. */
  #readFailures = 0;
  /** The error of the latest read, if it failed. */
  #lastReadError: unknown;

  #inflight: Promise<void> | undefined;
  #queued: { reason: ConsensusReadReason; promise: Promise<void>; resolve: () => void } | undefined;

  readonly #waiters = new WaitList<Waiter<S>>();
  /**
   * Waits satisfied by the current run of applies, for `wakeDue`: the first in a field (the
   * usual one reader per shard touches no array), the rest in `#dueMore`.
   */
  #dueFirst: Waiter<S> | undefined;
  #dueMore: Waiter<S>[] | undefined;
  /** The wake counter of the version being applied (watch, or timer for a poll). */
  #woken: CounterCell;
  readonly #takeDue = (w: Waiter<S>): void => {
    this.#unwatch(w);
    this.#woken.value++;
    if (this.#dueFirst === undefined) this.#dueFirst = w;
    else if (this.#dueMore === undefined) this.#dueMore = [w];
    else this.#dueMore.push(w);
  };
  readonly #onWaitAborted = (w: Waiter<S>, reason: unknown): void => {
    if (!this.#waiters.delete(w)) return;
    this.#stopPollIfNobody();
    w.reject(this.#aborted(reason));
  };
  /**
   * The signal this shard watches for its waits (one abort watch per shard, kept between waits:
   * a reader that waits again on the same signal after every diff adds and removes nothing),
   * and how many pending waits use it. A wait on another signal while this one is in use
   * watches its own.
   */
  #watched: AbortSignal | undefined;
  #watchedWaits = 0;
  readonly #watcher = { onAbort: (reason: unknown): void => this.#abortWatched(reason) };
  /**
   * The followers, oldest first. Copied on every change (followers come and go rarely, and a
   * notification iterates the array it started with, whatever its callbacks add or remove).
   */
  #followers: readonly Follower<S>[] = NO_FOLLOWERS;
  /**
   * `#followers.length`, and the follower when there is just one (the usual shard of a reader
   * that follows it), set with it by `#setFollowers`: an applied diff tells them without loading
   * the array and its elements (two cold lines per update in a reader following a thousand
   * shards).
   */
  #followerCount = 0;
  #soleFollower: Follower<S> | undefined;
  readonly #onFollowAborted = (f: Follower<S>): void => this.#unfollow(f);
  readonly #poll: PollSchedule;
  readonly #writer: WriterLoop<S, D>;

  constructor(deps: ShardDeps, shardId: string, model: StateModel<S, D>) {
    this.#d = deps;
    this.shardId = shardId;
    this.model = model;
    this.#state = model.initial();
    this.#log = deps.logger.child({ component: 'shard-state', shardId });
    const cells: ShardCells = deps.metrics.forShard(shardId);
    this.#applied = cells.applied;
    this.#stale = cells.stale;
    this.#outOfOrder = cells.outOfOrder;
    this.#woken = deps.metrics.wokenByWatch;
    this.#poll = new PollSchedule(deps.poll, () => this.#request('poll'));
    this.#writer = new WriterLoop<S, D>(
      new ShardWriterHost<S>(this, {
        applyCommitted: (seqno, state, nowMs) => {
          if (this.#seqno !== seqno - 1n) return;
          this.#advance(seqno, state, 'local', 'local', nowMs, nowMs);
          this.#drainHeld();
        },
        readAfterMismatch: async () => {
          await this.#request('cas_mismatch');
          return this.#lastReadError;
        },
        publish: (event) => this.#callHook('publish', () => this.#d.hooks.publish?.(event)),
      }),
      // Spelled out, not `{ ...deps, model, logger }`: those spread copies got maps of their own
      // (8 of 20 shards' shared the first's), so the writer loop's loads from them were
      // megamorphic and missed V8's stub cache at every commit (`Runtime_LoadIC_Miss`).
      {
        consensus: deps.consensus,
        model,
        clock: deps.clock,
        random: deps.random,
        logger: this.#log,
        metrics: deps.metrics,
        config: deps.config,
        background: deps.background,
      },
    );
  }

  get seqno(): bigint {
    return this.#seqno;
  }

  get state(): S {
    return this.#state;
  }

  get closed(): boolean {
    return this.#closed;
  }

  snapshot(): ShardVersion<S> {
    return { seqno: this.#seqno, state: this.#state };
  }

  /** Reads the shard from its earliest live entry; rejects if Consensus cannot be read. */
  async load(): Promise<void> {
    await this.#read('open', undefined);
    this.#drainHeld();
    this.#armReorderTimer();
  }

  // ---- receiving pushed diffs ------------------------------------------------------------

  receive(seqno: bigint, bytes: Uint8Array, options: ReceiveDiffOptions = {}): ReceiveOutcome {
    if (this.#closed) return 'not_open';
    if (this.#loaded && seqno <= this.#seqno) {
      this.#stale.value++;
      return 'stale';
    }
    const receivedAtMs = options.receivedAtMs ?? this.#d.clock.nowMs();
    let diff: D;
    let originMs: number;
    try {
      decodeEnvelopeDiff(bytes, this.model.name, seqno, received);
      originMs = options.originTimestampMs ?? received.wallTimeMs;
      const view = received.diff;
      received.diff = EMPTY;
      diff = this.model.decodeDiff(view);
    } catch (err) {
      return this.#badDiff(seqno, err instanceof EnvelopeError ? err.reason : 'decode', err);
    }
    if (this.#loaded && seqno === this.#seqno + 1n) {
      // Applied in the call that received it: its receive time is its apply time (no clock read).
      if (!this.#applyDiff(seqno, diff, originMs, receivedAtMs, receivedAtMs)) return 'refetch';
      this.#applied.value++;
      this.#drainHeld();
      return 'applied';
    }
    const held: Held<D> = { diff, originMs, receivedAtMs };
    if (this.#loaded) this.#outOfOrder.value++;
    if (this.#held.size >= this.#d.config().maxHeldDiffs && !this.#held.has(seqno)) {
      // Too far behind to hold more: read the gap now rather than grow without bound.
      this.#log.debug({ seqno: String(seqno) }, 'held diffs at their limit; fetching the gap now');
      void this.#request('gap');
      return 'refetch';
    }
    this.#held.hold(seqno, held);
    if (this.#loaded) this.#armReorderTimer();
    return 'held';
  }

  #badDiff(seqno: bigint, reason: 'decode' | 'apply' | 'seqno', err: unknown): 'refetch' {
    this.#d.metrics.diffInvalid.inc({ shard: this.shardId, reason });
    this.#log.warn({ err, diff: { seqno: String(seqno) }, reason }, 'refusing a pushed diff');
    void this.#request('bad_diff');
    return 'refetch';
  }

  /**
   * Applies a held or just-received diff at `#seqno + 1`; false (and a refetch) if it fails.
   * `appliedAtMs`: now, if the caller has just read the clock.
   */
  #applyDiff(
    seqno: bigint,
    diff: D,
    originMs: number,
    receivedAtMs: number,
    appliedAtMs?: number,
  ): boolean {
    let next: S;
    try {
      next = this.model.apply(this.#state, diff);
    } catch (err) {
      this.#badDiff(seqno, 'apply', err);
      return false;
    }
    this.#advance(seqno, next, 'pubsub', 'pubsub', originMs, receivedAtMs, appliedAtMs);
    return true;
  }

  /** Applies the held diffs that now follow the state, and settles the reorder window. */
  #drainHeld(): void {
    if (!this.#loaded) return;
    if (this.#held.size > 0) {
      for (;;) {
        const next = this.#seqno + 1n;
        const held = this.#held.take(next);
        if (held === undefined) break;
        if (!this.#applyDiff(next, held.diff, held.originMs, held.receivedAtMs)) return;
        this.#applied.value++;
      }
    }
    this.#discardHeld('pubsub');
  }

  /** Drops held diffs the state has passed; if none is left, the gap (if any) has closed. */
  #discardHeld(resolution: 'pubsub' | 'fetch'): void {
    if (this.#held.size === 0 && this.#held.gap.kind === 'none') return;
    const openMs = this.#held.discardThrough(this.#seqno, this.#d.clock.monotonicMs());
    if (openMs !== undefined) {
      this.#d.metrics.gapToApplied.observe({ resolution }, openMs / 1000);
    }
    if (this.#held.size === 0) {
      this.#reorderTimer?.cancel();
      this.#reorderTimer = undefined;
    }
  }

  #armReorderTimer(): void {
    if (this.#held.size === 0) return;
    const { clock } = this.#d;
    this.#held.openGap(clock.monotonicMs());
    const gap = this.#held.gap;
    if (this.#reorderTimer !== undefined || gap.kind !== 'open') return;
    const cfg = this.#d.config();
    // After failed reads, back off on the poll schedule instead of retrying every window.
    const waitMs =
      this.#readFailures === 0
        ? cfg.reorderWindowMs
        : Math.max(cfg.reorderWindowMs, pollDelayMs(cfg, this.#readFailures));
    const remaining = gap.windowStartMs + waitMs - clock.monotonicMs();
    if (remaining <= 0) {
      void this.#request('gap');
      return;
    }
    this.#reorderTimer = clock.setTimer(() => {
      this.#reorderTimer = undefined;
      void this.#request('gap');
    }, remaining);
  }

  // ---- reading Consensus -----------------------------------------------------------------

  /**
   * Reads Consensus for `reason`, coalesced: while a read is in flight, at most one more is
   * queued, and every caller in the meantime shares it. Never rejects; failures are logged.
   */
  request(reason: ConsensusReadReason): Promise<void> {
    return this.#request(reason);
  }

  #request(reason: ConsensusReadReason): Promise<void> {
    if (this.#closed) return RESOLVED;
    if (this.#inflight === undefined) {
      const run = this.#runRead(reason).finally(() => {
        this.#inflight = undefined;
        const q = this.#queued;
        if (q !== undefined) {
          this.#queued = undefined;
          void this.#request(q.reason).then(q.resolve);
        }
      });
      this.#inflight = run;
      return run;
    }
    if (this.#queued === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      this.#queued = { reason, promise, resolve };
    }
    return this.#queued.promise;
  }

  async #runRead(reason: ConsensusReadReason): Promise<void> {
    let limitTo: bigint | undefined;
    if (reason === 'gap') {
      const min = this.#held.lowest();
      if (min === undefined || min <= this.#seqno + 1n) {
        // The gap closed (or holds the next seqno) while we waited: nothing to read.
        this.#d.metrics.fetches.inc({ path: 'noop' });
        this.#drainHeld();
        return;
      }
      limitTo = min - 1n;
    }
    try {
      await this.#read(reason, limitTo);
      this.#readFailures = 0;
      this.#lastReadError = undefined;
    } catch (err) {
      this.#readFailures++;
      this.#lastReadError = err;
      this.#log.warn({ err, reason }, 'reading the shard from Consensus failed');
    }
    this.#drainHeld();
    if (this.#held.size > 0) {
      // A gap remains (the read failed, or another gap lies behind newer held diffs): give it
      // its own window.
      this.#held.newWindow(this.#d.clock.monotonicMs());
      this.#armReorderTimer();
    }
  }

  /**
   * Reads versions newer than the state (or, before the first load, from the earliest live
   * entry) and applies them; with `limitTo`, stops there (exactly a gap's missing range).
   * Throws if Consensus fails or the log cannot be read; the state stays at the last good one.
   */
  async #read(reason: ConsensusReadReason, limitTo: bigint | undefined): Promise<void> {
    try {
      let end = await this.#readFrom(reason, limitTo, false);
      if (end.kind === 'reload') {
        this.#log.info({ reason: end.why }, 'reloading the shard from its earliest rollup');
        end = await this.#readFrom('reload', limitTo, true);
      }
      if (end.kind === 'failed') throw end.error;
    } catch (err) {
      const code =
        err instanceof ShardStateError || err instanceof ConsensusError ? err.code : 'unknown';
      this.#d.metrics.readErrors.inc({ code });
      throw err;
    }
  }

  /** Reads pages of the log and applies what `foldPage` makes of each. */
  async #readFrom(
    reason: ConsensusReadReason,
    limitTo: bigint | undefined,
    fromStart: boolean,
  ): Promise<PageEnd> {
    const { consensus, metrics } = this.#d;
    const { model } = this;
    const done: PageEnd = { kind: 'continue' };
    let path: FetchPath = 'empty';
    let from = fromStart || !this.#loaded ? 0n : this.#seqno + 1n;
    metrics.consensusReads.inc({ reason });
    for (let page = 0; ; page++) {
      if (this.#closed) return done;
      let limit = this.#d.config().fetchBatchSize;
      if (limitTo !== undefined) {
        const want = limitTo - this.#seqno;
        if (want <= 0n) break;
        if (want < BigInt(limit)) limit = Number(want);
      }
      if (page > 0) metrics.consensusReads.inc({ reason });
      const entries = await consensus.scan(this.shardId, from, limit);
      if (this.#closed) return done;
      const readAtMs = this.#d.clock.nowMs();
      const fold = foldPage(
        model,
        { seqno: this.#seqno, state: this.#state, loaded: this.#loaded },
        entries,
        {
          shardId: this.shardId,
          fromStart,
          onDiffFallback: (seqno, err) =>
            this.#log.warn({ err, seqno: String(seqno) }, 'diff failed; using its rollup'),
        },
      );
      for (const step of fold.steps) {
        this.#advance(step.seqno, step.state, 'fetch', reason, step.wallTimeMs, readAtMs);
        if (step.slow) path = 'slow';
        else if (path === 'empty') path = 'fast';
      }
      if (fold.end.kind !== 'continue') return fold.end;
      const last = entries[entries.length - 1];
      if (entries.length < limit || last === undefined) break;
      from = last.seqno + 1n;
    }
    this.#loaded = true;
    metrics.fetches.inc({ path });
    return done;
  }

  // ---- applying ----------------------------------------------------------------------------

  #advance(
    seqno: bigint,
    state: S,
    source: AppliedSource,
    reason: ConsensusReadReason | 'pubsub' | 'local',
    originMs: number,
    receivedAtMs: number,
    appliedAtMs: number = this.#d.clock.nowMs(),
  ): void {
    this.#seqno = seqno;
    this.#state = state;
    this.#loaded = true;
    this.#discardHeld(source === 'fetch' ? 'fetch' : 'pubsub');
    const { hooks } = this.#d;
    if (hooks.onApplied !== undefined) {
      try {
        hooks.onApplied({
          shardId: this.shardId,
          seqno,
          source,
          reason,
          originTimestampMs: originMs,
          receivedAtMs,
          appliedAtMs,
        });
      } catch (err) {
        this.#log.error({ err, hook: 'onApplied' }, 'a shard-state hook threw');
      }
    }
    if (this.#waiters.size > 0) {
      const { metrics } = this.#d;
      this.#woken = reason === 'poll' ? metrics.wokenByTimer : metrics.wokenByWatch;
      const wasDue = this.#dueFirst !== undefined;
      this.#waiters.removeDue(seqno, this.#takeDue);
      if (!wasDue && this.#dueFirst !== undefined) this.#d.wakes.schedule(this);
      if (this.#waiters.size === 0 && this.#followerCount === 0) this.#poll.idle();
    }
    // Progress resets the poll schedule (reference: a listener that saw a new seqno starts over).
    this.#poll.progress();
    const count = this.#followerCount;
    if (count === 1) this.#tellFollowers(this.#soleFollower, seqno, state, source, reason);
    else if (count > 1) this.#tellFollowers(undefined, seqno, state, source, reason);
  }

  /**
   * Calls each follower with the version just applied (after the shard's own bookkeeping): `sole`,
   * or else every one of `#followers` as it is now.
   */
  #tellFollowers(
    sole: Follower<S> | undefined,
    seqno: bigint,
    state: S,
    source: AppliedSource,
    reason: ConsensusReadReason | 'pubsub' | 'local',
  ): void {
    const { metrics } = this.#d;
    const woken = reason === 'poll' ? metrics.wokenByTimer : metrics.wokenByWatch;
    const version: ShardVersion<S> = { seqno, state };
    const followers = sole === undefined ? this.#followers : undefined;
    const n = followers === undefined ? 1 : followers.length;
    for (let i = 0; i < n; i++) {
      const f = followers === undefined ? (sole as Follower<S>) : (followers[i] as Follower<S>);
      if (!f.active) continue;
      woken.value++;
      try {
        f.fn(version, source);
      } catch (err) {
        metrics.followerErrors.value++;
        this.#log.error({ err, seqno: String(seqno) }, 'an onVersion callback threw');
      }
      // A callback that applied a newer version (synchronously) has told every follower of it:
      // the rest do not get this older one after it.
      if (this.#seqno !== seqno) return;
    }
  }

  #callHook(name: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#log.error({ err, hook: name }, 'a shard-state hook threw');
    }
  }

  // ---- waiting -----------------------------------------------------------------------------

  /**
   * Resolves with the snapshot once the state reaches `seqno` (taken when the run of applies
   * that got there is over, so a batch wakes a waiter once, with its last version). Rejects
   * with `aborted` when `signal` aborts (one listener per signal, whatever the number of waits
   * on it), with `closed` when `owner` is released (`releaseWaiters`) or the shard closes.
   * While anyone waits, the shard polls Consensus on the reference schedule.
   */
  waitFor(
    seqno: bigint,
    signal: AbortSignal | undefined,
    owner?: object,
  ): Promise<ShardVersion<S>> {
    if (this.#seqno >= seqno) return Promise.resolve(this.snapshot());
    if (this.#closed) {
      return Promise.reject(
        new ShardStateError('closed', 'the shard was released', { shardId: this.shardId }),
      );
    }
    if (signal?.aborted) return Promise.reject(this.#aborted(signal.reason));
    const promise = new Promise<ShardVersion<S>>(capture);
    const waiter = new Waiter<S>(
      seqno,
      owner,
      signal,
      madeResolve as (value: ShardVersion<S>) => void,
      madeReject as (err: unknown) => void,
      this.#onWaitAborted,
    );
    this.#waiters.add(waiter);
    if (signal !== undefined) this.#watch(waiter, signal);
    this.#poll.start();
    return promise;
  }

  /** Watches `w`'s signal: through the shard's own watch when it is free or the same signal. */
  #watch(w: Waiter<S>, signal: AbortSignal): void {
    if (signal !== this.#watched) {
      if (this.#watchedWaits > 0) {
        watchAbort(signal, w);
        return;
      }
      if (this.#watched !== undefined) unwatchAbort(this.#watched, this.#watcher);
      this.#watched = signal;
      watchAbort(signal, this.#watcher);
    }
    this.#watchedWaits++;
    w.viaShard = true;
  }

  /** `w` no longer waits: its watch goes (the shard's own stays, for the next wait). */
  #unwatch(w: Waiter<S>): void {
    if (w.viaShard) this.#watchedWaits--;
    else if (w.signal !== undefined) unwatchAbort(w.signal, w);
  }

  /** The shard's watched signal aborted: its waits on it are rejected. */
  #abortWatched(reason: unknown): void {
    const signal = this.#watched;
    this.#watched = undefined;
    this.#watchedWaits = 0;
    this.#waiters.removeWhere(
      (w) => w.viaShard && w.signal === signal,
      (w) => w.reject(this.#aborted(reason)),
    );
    this.#stopPollIfNobody();
  }

  /** Stops the polling fallback once nobody waits or follows. */
  #stopPollIfNobody(): void {
    if (this.#waiters.size === 0 && this.#followerCount === 0) this.#poll.stop();
  }

  /** Resolves the waits the last run of applies satisfied (called by the cache's `WakeQueue`). */
  wakeDue(): void {
    const first = this.#dueFirst;
    if (first === undefined) return;
    this.#dueFirst = undefined;
    first.resolve(this.snapshot());
    const more = this.#dueMore;
    if (more === undefined || more.length === 0) return;
    this.#dueMore = undefined;
    for (const w of more) w.resolve(this.snapshot());
  }

  /** `owner` (a handle) is closing: rejects its pending waits with `closed`, drops its followers. */
  releaseOwner(owner: object): void {
    this.#waiters.removeWhere(
      (w) => w.owner === owner,
      (w) => {
        this.#unwatch(w);
        w.reject(new ShardStateError('closed', 'the handle was closed', { shardId: this.shardId }));
      },
    );
    for (const f of this.#followers) if (f.owner === owner) this.#unfollow(f);
    this.#stopPollIfNobody();
  }

  #aborted(reason: unknown): ShardStateError {
    return new ShardStateError('aborted', 'the call was aborted', {
      shardId: this.shardId,
      cause: reason,
    });
  }

  /**
   * Calls `fn` synchronously with every version applied from now on, in seqno order, until the
   * returned function is called, `signal` aborts, `owner` is released (`releaseOwner`) or the
   * shard closes. An exception in `fn` is caught, logged and counted. While anyone follows, the
   * shard polls Consensus on the reference schedule, as for a pending wait.
   */
  follow(fn: VersionCallback<S>, signal: AbortSignal | undefined, owner?: object): () => void {
    if (this.#closed || signal?.aborted) return noop;
    const f = new Follower<S>(fn, owner, signal, this.#onFollowAborted);
    this.#setFollowers([...this.#followers, f]);
    if (signal !== undefined) watchAbort(signal, f);
    this.#poll.start();
    return () => this.#unfollow(f);
  }

  #unfollow(f: Follower<S>): void {
    if (!f.active) return;
    f.active = false;
    const rest = this.#followers.filter((x) => x !== f);
    this.#setFollowers(rest.length === 0 ? NO_FOLLOWERS : rest);
    // The signal's listener goes with its last watcher: a long-lived signal keeps nothing.
    if (f.signal !== undefined) releaseAbort(f.signal, f);
    this.#stopPollIfNobody();
  }

  #setFollowers(followers: readonly Follower<S>[]): void {
    this.#followers = followers;
    this.#followerCount = followers.length;
    this.#soleFollower = followers.length === 1 ? followers[0] : undefined;
  }

  /** Re-times sleeping timers after a config change, so it takes effect at once. */
  configChanged(): void {
    this.#writer.configChanged();
    this.#poll.configChanged();
    if (this.#reorderTimer !== undefined) {
      this.#reorderTimer.cancel();
      this.#reorderTimer = undefined;
      this.#armReorderTimer();
    }
  }

  // ---- writing -----------------------------------------------------------------------------

  update(fn: UpdateFn<S>, signal: AbortSignal | undefined): Promise<UpdateResult<S>> {
    return this.#writer.update(fn, signal);
  }

  /** Stops every timer and rejects pending waits with `closed`. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Made only when someone waits: an Error's stack costs microseconds per shard released.
    const closed =
      this.#waiters.size === 0
        ? undefined
        : new ShardStateError('closed', 'the shard was released', { shardId: this.shardId });
    for (const w of this.#waiters.clear()) {
      this.#unwatch(w);
      w.reject(closed);
    }
    if (this.#watched !== undefined) unwatchAbort(this.#watched, this.#watcher);
    this.#watched = undefined;
    this.#reorderTimer?.cancel();
    this.#reorderTimer = undefined;
    this.#poll.stop();
    this.#held.clear();
    for (const f of this.#followers) {
      f.active = false;
      if (f.signal !== undefined) releaseAbort(f.signal, f);
    }
    this.#setFollowers(NO_FOLLOWERS);
    this.#queued?.resolve();
    this.#queued = undefined;
  }
}
