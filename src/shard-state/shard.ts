/**
 * One shard's shared state in one process: the seqno-ordered application of diffs from pubsub,
 * Consensus reads (open, gap, poll, catch-up), the writer path and the waiters. The cache owns
 * one `Shard` per shard id and hands out handles on it.
 *
 * Invariant: `#state` is always the fold of the Consensus log up to `#seqno`. Every change goes
 * through `#advance`, and a new state is computed (by a pure `apply`) before it replaces the old
 * one, so a diff that fails leaves the state as it was.
 */
import type { Logger } from 'pino';
import { type Consensus, ConsensusError, isIndeterminate } from '../consensus/index.js';
import { type Clock, sleep, type Timer } from '../util/index.js';
import { jitter, pollDelayMs, type ShardStateConfig, writerDelayMs } from './config.js';
import { decodeEnvelope, type Envelope, EnvelopeError, encodeEnvelope } from './envelope.js';
import { ShardStateError, throwIfAborted } from './errors.js';
import type { FetchPath, ShardStateMetrics } from './metrics.js';
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
} from './types.js';

export interface ShardDeps<S, D> {
  shardId: string;
  consensus: Consensus;
  model: StateModel<S, D>;
  clock: Clock;
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

interface Waiter {
  seqno: bigint;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface PollState {
  /** 0 for the first sleep; +1 after each poll that found nothing. */
  attempt: number;
  /** When the current sleep started (clock ms). */
  sleepStartMs: number;
  /** The jitter factor drawn for the current sleep. */
  jitterUnit: number;
  timer: Timer | undefined;
}

/** A Consensus log that cannot be followed from where the state is: read from its start. */
class NeedsReload extends Error {}

export class Shard<S, D> {
  readonly shardId: string;
  readonly model: StateModel<S, D>;
  readonly #d: ShardDeps<S, D>;
  readonly #log: Logger;
  #seqno = 0n;
  #state: S;
  #loaded = false;
  #closed = false;

  /** Diffs that arrived ahead of `#seqno + 1`, by seqno. */
  readonly #held = new Map<bigint, Held<D>>();
  /** When the current gap was first seen (clock ms), for the gap→applied histogram. */
  #gapSinceMs: number | undefined;
  /** Wall-clock precise start of the gap (performance.now), for the histogram. */
  #gapSincePerf: number | undefined;
  #reorderTimer: Timer | undefined;
  /** Consecutive failed Consensus reads; spaces out gap retries. */
  #readFailures = 0;
  /** The error of the latest read, if it failed. */
  #lastReadError: unknown;

  #inflight: Promise<void> | undefined;
  #queued: { reason: ConsensusReadReason; promise: Promise<void>; resolve: () => void } | undefined;

  readonly #waiters = new Set<Waiter>();
  readonly #listeners = new Set<() => void>();
  #poll: PollState | undefined;

  constructor(deps: ShardDeps<S, D>) {
    this.#d = deps;
    this.shardId = deps.shardId;
    this.model = deps.model;
    this.#state = deps.model.initial();
    this.#log = deps.logger.child({ component: 'shard-state', shardId: deps.shardId });
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
    const m = this.#d.metrics;
    if (this.#loaded && seqno <= this.#seqno) {
      m.diffStale.inc({ shard: this.shardId });
      return 'stale';
    }
    const receivedAtMs = options.receivedAtMs ?? this.#d.clock.nowMs();
    let env: Envelope;
    let diff: D;
    try {
      env = decodeEnvelope(bytes, this.model.name, seqno);
      diff = this.model.decodeDiff(env.diff);
    } catch (err) {
      return this.#badDiff(seqno, err instanceof EnvelopeError ? err.reason : 'decode', err);
    }
    const held: Held<D> = {
      diff,
      originMs: options.originTimestampMs ?? env.wallTimeMs,
      receivedAtMs,
    };
    if (this.#loaded && seqno === this.#seqno + 1n) {
      if (!this.#applyHeld(seqno, held)) return 'refetch';
      m.diffApplied.inc({ shard: this.shardId });
      this.#drainHeld();
      return 'applied';
    }
    if (this.#loaded) m.diffOutOfOrder.inc({ shard: this.shardId });
    if (this.#held.size >= this.#d.config().maxHeldDiffs && !this.#held.has(seqno)) {
      // Too far behind to hold more: read the gap now rather than grow without bound.
      this.#log.debug({ seqno: String(seqno) }, 'held diffs at their limit; fetching the gap now');
      void this.#request('gap');
      return 'refetch';
    }
    this.#held.set(seqno, held);
    if (this.#loaded) this.#armReorderTimer();
    return 'held';
  }

  #badDiff(seqno: bigint, reason: 'decode' | 'apply' | 'seqno', err: unknown): 'refetch' {
    this.#d.metrics.diffInvalid.inc({ shard: this.shardId, reason });
    this.#log.warn({ err, diff: { seqno: String(seqno) }, reason }, 'refusing a pushed diff');
    void this.#request('bad_diff');
    return 'refetch';
  }

  /** Applies a held or just-received diff at `#seqno + 1`; false (and a refetch) if it fails. */
  #applyHeld(seqno: bigint, held: Held<D>): boolean {
    let next: S;
    try {
      next = this.model.apply(this.#state, held.diff);
    } catch (err) {
      this.#badDiff(seqno, 'apply', err);
      return false;
    }
    this.#advance(seqno, next, 'pubsub', 'pubsub', held.originMs, held.receivedAtMs);
    return true;
  }

  /** Applies the held diffs that now follow the state, and settles the reorder window. */
  #drainHeld(): void {
    if (!this.#loaded) return;
    for (;;) {
      const next = this.#seqno + 1n;
      const held = this.#held.get(next);
      if (held === undefined) break;
      this.#held.delete(next);
      if (!this.#applyHeld(next, held)) return;
      this.#d.metrics.diffApplied.inc({ shard: this.shardId });
    }
    for (const s of this.#held.keys()) if (s <= this.#seqno) this.#held.delete(s);
    if (this.#held.size === 0) this.#gapClosed('pubsub');
  }

  #armReorderTimer(): void {
    if (this.#held.size === 0) return;
    if (this.#gapSinceMs === undefined) {
      this.#gapSinceMs = this.#d.clock.nowMs();
      this.#gapSincePerf ??= performance.now();
    }
    if (this.#reorderTimer !== undefined) return;
    const cfg = this.#d.config();
    // After failed reads, back off on the poll schedule instead of retrying every window.
    const waitMs =
      this.#readFailures === 0
        ? cfg.reorderWindowMs
        : Math.max(cfg.reorderWindowMs, pollDelayMs(cfg, this.#readFailures));
    const remaining = this.#gapSinceMs + waitMs - this.#d.clock.nowMs();
    if (remaining <= 0) {
      void this.#request('gap');
      return;
    }
    this.#reorderTimer = this.#d.clock.setTimer(() => {
      this.#reorderTimer = undefined;
      void this.#request('gap');
    }, remaining);
  }

  #gapClosed(resolution: 'pubsub' | 'fetch'): void {
    if (this.#gapSincePerf !== undefined) {
      this.#d.metrics.gapToApplied.observe(
        { resolution },
        (performance.now() - this.#gapSincePerf) / 1000,
      );
    }
    this.#gapSinceMs = undefined;
    this.#gapSincePerf = undefined;
    this.#reorderTimer?.cancel();
    this.#reorderTimer = undefined;
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
    if (this.#closed) return Promise.resolve();
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
      let min: bigint | undefined;
      for (const s of this.#held.keys()) if (min === undefined || s < min) min = s;
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
      this.#gapSinceMs = undefined;
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
      try {
        await this.#readFrom(reason, limitTo, false);
      } catch (err) {
        if (!(err instanceof NeedsReload)) throw err;
        this.#log.info({ reason: err.message }, 'reloading the shard from its earliest rollup');
        await this.#readFrom('reload', limitTo, true);
      }
    } catch (err) {
      const code =
        err instanceof ShardStateError || err instanceof ConsensusError ? err.code : 'unknown';
      this.#d.metrics.readErrors.inc({ code });
      throw err;
    }
  }

  async #readFrom(
    reason: ConsensusReadReason,
    limitTo: bigint | undefined,
    fromStart: boolean,
  ): Promise<void> {
    const { consensus, model, metrics } = this.#d;
    let path: FetchPath = 'empty';
    let from = fromStart || !this.#loaded ? 0n : this.#seqno + 1n;
    metrics.consensusReads.inc({ reason });
    for (let page = 0; ; page++) {
      if (this.#closed) return;
      let limit = this.#d.config().fetchBatchSize;
      if (limitTo !== undefined) {
        const want = limitTo - this.#seqno;
        if (want <= 0n) break;
        if (want < BigInt(limit)) limit = Number(want);
      }
      if (page > 0) metrics.consensusReads.inc({ reason });
      const entries = await consensus.scan(this.shardId, from, limit);
      if (this.#closed) return;
      const readAtMs = this.#d.clock.nowMs();
      // Decode every entry first (to find the page's newest rollup); an unreadable one only
      // stops the read when it is reached, so the versions before it still apply.
      const envs: (Envelope | Error)[] = entries.map((e) => {
        try {
          return decodeEnvelope(e.data, model.name, e.seqno);
        } catch (err) {
          return new ShardStateError('corrupt_log', `version ${e.seqno} is unreadable`, {
            shardId: this.shardId,
            cause: err,
          });
        }
      });
      let start = 0;
      if (fromStart || !this.#loaded) {
        // Start at the newest rollup of the page: the versions before it need not be applied.
        for (let i = envs.length - 1; i >= 0; i--) {
          const env = envs[i];
          if (env !== undefined && !(env instanceof Error) && env.rollup !== undefined) {
            start = i;
            break;
          }
        }
      }
      for (let i = start; i < envs.length; i++) {
        const env = envs[i] as Envelope | Error;
        if (env instanceof Error) {
          if (this.#loaded && (entries[i]?.seqno ?? 0n) <= this.#seqno) continue;
          throw env;
        }
        if (this.#loaded && env.seqnoTo <= this.#seqno) continue;
        if (this.#loaded && env.seqnoFrom === this.#seqno) {
          let next: S | undefined;
          try {
            next = model.apply(this.#state, model.decodeDiff(env.diff));
          } catch (err) {
            if (env.rollup === undefined) {
              throw new ShardStateError('corrupt_log', `version ${env.seqnoTo} does not apply`, {
                shardId: this.shardId,
                cause: err,
              });
            }
            this.#log.warn({ err, seqno: String(env.seqnoTo) }, 'diff failed; using its rollup');
          }
          if (next !== undefined) {
            this.#advance(env.seqnoTo, next, 'fetch', reason, env.wallTimeMs, readAtMs);
            if (path === 'empty') path = 'fast';
            continue;
          }
        }
        if (env.rollup === undefined) {
          if (fromStart) {
            throw new ShardStateError(
              'corrupt_log',
              `version ${env.seqnoTo} neither follows ${this.#seqno} nor carries a rollup`,
              { shardId: this.shardId },
            );
          }
          throw new NeedsReload(`version ${env.seqnoTo} does not follow ${this.#seqno}`);
        }
        let state: S;
        try {
          state = model.decodeState(env.rollup);
        } catch (err) {
          throw new ShardStateError('corrupt_log', `rollup ${env.seqnoTo} does not decode`, {
            shardId: this.shardId,
            cause: err,
          });
        }
        this.#advance(env.seqnoTo, state, 'fetch', reason, env.wallTimeMs, readAtMs);
        path = 'slow';
      }
      const last = entries[entries.length - 1];
      if (entries.length < limit || last === undefined) break;
      from = last.seqno + 1n;
    }
    this.#loaded = true;
    metrics.fetches.inc({ path });
  }

  // ---- applying ----------------------------------------------------------------------------

  #advance(
    seqno: bigint,
    state: S,
    source: AppliedSource,
    reason: ConsensusReadReason | 'pubsub' | 'local',
    originMs: number,
    receivedAtMs: number,
  ): void {
    this.#seqno = seqno;
    this.#state = state;
    this.#loaded = true;
    for (const s of this.#held.keys()) if (s <= seqno) this.#held.delete(s);
    if (this.#held.size === 0 && this.#gapSinceMs !== undefined) {
      this.#gapClosed(source === 'fetch' ? 'fetch' : 'pubsub');
    }
    const appliedAtMs = this.#d.clock.nowMs();
    this.#callHook('onApplied', () =>
      this.#d.hooks.onApplied?.({
        shardId: this.shardId,
        seqno,
        source,
        reason,
        originTimestampMs: originMs,
        receivedAtMs,
        appliedAtMs,
      }),
    );
    const via = reason === 'poll' ? 'timer' : 'watch';
    for (const w of this.#waiters) {
      if (w.seqno <= seqno) {
        this.#waiters.delete(w);
        this.#d.metrics.listenWoken.inc({ via });
        w.resolve();
      }
    }
    for (const l of this.#listeners) l();
    // Progress resets the poll schedule (reference: a listener that saw a new seqno starts over).
    if (this.#poll !== undefined) {
      this.#poll.attempt = 0;
      this.#schedulePoll(true);
    }
  }

  #callHook(name: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#log.error({ err, hook: name }, 'a shard-state hook threw');
    }
  }

  // ---- waiting and polling -----------------------------------------------------------------

  /**
   * Resolves when the state reaches `seqno`; rejects with the signal's reason on abort.
   * While anyone waits, the shard polls Consensus on the reference schedule.
   */
  waitFor(seqno: bigint, signal: AbortSignal | undefined): Promise<void> {
    if (this.#seqno >= seqno) return Promise.resolve();
    if (this.#closed) {
      return Promise.reject(
        new ShardStateError('closed', 'the shard was released', { shardId: this.shardId }),
      );
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.#waiters.delete(waiter);
        this.#stopPollingIfIdle();
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        seqno,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          this.#stopPollingIfIdle();
          resolve();
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      this.#waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#startPolling();
    });
  }

  /** Calls `fn` after every applied version until the returned function is called. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #startPolling(): void {
    if (this.#poll !== undefined || this.#closed) return;
    this.#poll = { attempt: 0, sleepStartMs: 0, jitterUnit: 0, timer: undefined };
    this.#schedulePoll(true);
  }

  #stopPollingIfIdle(): void {
    if (this.#waiters.size > 0 || this.#poll === undefined) return;
    this.#poll.timer?.cancel();
    this.#poll = undefined;
  }

  /**
   * (Re)arms the poll timer for the current attempt. `fresh`: a new sleep starts now with new
   * jitter; otherwise the running sleep is re-timed under the current config (setConfig).
   */
  #schedulePoll(fresh: boolean): void {
    const poll = this.#poll;
    if (poll === undefined) return;
    poll.timer?.cancel();
    const now = this.#d.clock.nowMs();
    if (fresh) {
      poll.sleepStartMs = now;
      poll.jitterUnit = this.#d.random();
    }
    const cfg = this.#d.config();
    const delay = jitter(
      pollDelayMs(cfg, poll.attempt),
      cfg.pollJitterRatio,
      () => poll.jitterUnit,
    );
    const remaining = Math.max(0, poll.sleepStartMs + delay - now);
    // Someone awaits this poll (a waitForSeqno or a listen loop): keep the process alive.
    poll.timer = this.#d.clock.setTimer(
      () => {
        poll.timer = undefined;
        void this.#onPollTimer(poll);
      },
      remaining,
      { keepAlive: true },
    );
  }

  async #onPollTimer(poll: PollState): Promise<void> {
    const before = this.#seqno;
    await this.#request('poll');
    if (this.#poll !== poll || poll.timer !== undefined) return; // stopped, or reset by progress
    if (this.#seqno === before) poll.attempt++;
    else poll.attempt = 0;
    this.#schedulePoll(true);
  }

  /** Re-times sleeping timers after a config change, so it takes effect at once. */
  configChanged(): void {
    for (const retime of this.#writerSleeps) retime();
    if (this.#poll?.timer !== undefined) this.#schedulePoll(false);
    if (this.#reorderTimer !== undefined) {
      this.#reorderTimer.cancel();
      this.#reorderTimer = undefined;
      this.#armReorderTimer();
    }
  }

  // ---- writing -----------------------------------------------------------------------------

  /** Re-timers of the writers' sleeping backoffs, so a config change reaches them at once. */
  readonly #writerSleeps = new Set<() => void>();

  /**
   * The writer's sleep after its `retry`-th lost compare-and-set; re-timed under a new config
   * while it sleeps. Keeps the process alive (the caller awaits it); rejects on abort.
   */
  #writerBackoff(retry: number, signal: AbortSignal | undefined): Promise<void> {
    const { clock } = this.#d;
    const jitterUnit = this.#d.random();
    const startMs = clock.nowMs();
    return new Promise<void>((resolve, reject) => {
      let timer: Timer | undefined;
      const done = () => {
        this.#writerSleeps.delete(retime);
        signal?.removeEventListener('abort', onAbort);
        timer?.cancel();
      };
      const retime = () => {
        timer?.cancel();
        const cfg = this.#d.config();
        const delay = jitter(writerDelayMs(cfg, retry), cfg.pollJitterRatio, () => jitterUnit);
        timer = clock.setTimer(
          () => {
            done();
            resolve();
          },
          Math.max(0, startMs + delay - clock.nowMs()),
          { keepAlive: true },
        );
      };
      const onAbort = () => {
        done();
        reject(signal?.reason);
      };
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#writerSleeps.add(retime);
      retime();
    });
  }

  async update(fn: UpdateFn<S>, signal: AbortSignal | undefined): Promise<UpdateResult<S>> {
    const { consensus, model, clock, metrics } = this.#d;
    let retries = 0;
    for (let attempt = 1; ; attempt++) {
      this.#throwIfClosed();
      throwIfAborted(signal, this.shardId);
      const seqno = this.#seqno;
      const state = this.#state;
      const nowMs = clock.nowMs();
      const next = fn(state, { seqno, nowMs, attempt });
      const seqnoTo = seqno + 1n;
      const cfg = this.#d.config();
      const rollupEvery = BigInt(cfg.rollupInterval);
      const isRollup = seqnoTo === 1n || seqnoTo % rollupEvery === 0n;
      let envelope: Envelope | undefined;
      try {
        const diff = next === undefined || next === state ? undefined : model.diff(state, next);
        if (next !== undefined && diff !== undefined && !model.isEmptyDiff(diff)) {
          envelope = {
            seqnoFrom: seqno,
            seqnoTo,
            wallTimeMs: nowMs,
            diff: model.encodeDiff(diff),
            rollup: isRollup ? model.encodeState(next) : undefined,
            model: model.name,
          };
        }
      } catch (err) {
        throw new ShardStateError(
          'invalid_argument',
          'the update function returned a state the model cannot diff or encode',
          { shardId: this.shardId, cause: err },
        );
      }
      if (next === undefined || envelope === undefined) {
        metrics.commits.inc({ outcome: 'noop' });
        return { outcome: 'noop', seqno, state, attempts: attempt - 1 };
      }
      const data = encodeEnvelope(envelope);
      let outcome: 'committed' | 'mismatch' | 'unavailable';
      try {
        outcome = await consensus.compareAndSet(
          this.shardId,
          seqno === 0n ? null : seqno,
          { seqno: seqnoTo, data },
          { signal },
        );
      } catch (err) {
        outcome = await this.#afterCasError(err, seqnoTo, data, signal);
      }
      if (outcome === 'committed') {
        metrics.commits.inc({ outcome: 'committed' });
        if (this.#seqno === seqno) {
          this.#advance(seqnoTo, next, 'local', 'local', nowMs, nowMs);
          this.#drainHeld();
        }
        const pushed = encodeEnvelope({ ...envelope, rollup: undefined });
        // The commit time is when the compare-and-set returned, not when the diff was built
        // (`wallTimeMs`, stored in the envelope before the write): e2e latency then measures
        // commit -> applied, without the Consensus write itself.
        const commitTimeMs = clock.nowMs();
        this.#callHook('publish', () =>
          this.#d.hooks.publish?.({
            shardId: this.shardId,
            seqno: seqnoTo,
            diff: pushed,
            commitTimeMs,
          }),
        );
        if (isRollup && cfg.truncate) void this.#truncateBehind(seqnoTo);
        return { outcome: 'committed', seqno: seqnoTo, state: next, attempts: attempt };
      }
      metrics.commits.inc({ outcome });
      if (outcome === 'mismatch') {
        await this.#request('cas_mismatch');
        const err = this.#lastReadError;
        // A log this model cannot follow will not heal by retrying: report it.
        if (err instanceof ShardStateError && err.code === 'corrupt_log') throw err;
      }
      try {
        await this.#writerBackoff(retries++, signal);
      } catch (err) {
        throw new ShardStateError('aborted', 'the update was aborted', {
          shardId: this.shardId,
          cause: err,
        });
      }
    }
  }

  /**
   * After a compare-and-set threw: an indeterminate error re-reads the version to learn whether
   * it landed; a determinate `unavailable` is retried; anything else is the caller's.
   *
   * Known limit: if other writers commit a whole rollup interval on top of ours and truncate
   * behind their rollup before the re-read, our version is gone from the log and reads as not
   * landed, so `fn` is applied again on top. Exactly-once across that window needs an
   * idempotency token in the state (as persist's writers keep), which is the model's business.
   */
  async #afterCasError(
    err: unknown,
    seqnoTo: bigint,
    data: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<'committed' | 'mismatch' | 'unavailable'> {
    if (isIndeterminate(err)) {
      this.#d.metrics.commits.inc({ outcome: 'indeterminate' });
      this.#log.info({ err, seqno: String(seqnoTo) }, 'compare-and-set indeterminate; re-reading');
      for (;;) {
        throwIfAborted(signal, this.shardId);
        try {
          this.#d.metrics.consensusReads.inc({ reason: 'indeterminate' });
          const [entry] = await this.#d.consensus.scan(this.shardId, seqnoTo, 1, { signal });
          if (entry === undefined || entry.seqno !== seqnoTo) {
            // Not there. A version above it would mean ours lost; none means it did not land.
            return 'mismatch';
          }
          return bytesEqual(entry.data, data) ? 'committed' : 'mismatch';
        } catch (readErr) {
          if (readErr instanceof ConsensusError && readErr.code === 'aborted') break;
          if (readErr instanceof ConsensusError && readErr.code === 'closed') break;
          this.#log.warn({ err: readErr }, 're-read after an indeterminate error failed');
          await sleep(this.#d.config().writerInitialBackoffMs, {
            clock: this.#d.clock,
            signal,
          }).catch(() => {});
        }
      }
    }
    if (err instanceof ConsensusError && err.code === 'unavailable') {
      this.#log.warn({ err }, 'Consensus unavailable; retrying the update');
      this.#d.metrics.commits.inc({ outcome: 'error' });
      return 'unavailable';
    }
    if (signal?.aborted || (err instanceof ConsensusError && err.code === 'aborted')) {
      throw new ShardStateError('aborted', 'the update was aborted', {
        shardId: this.shardId,
        cause: err,
      });
    }
    this.#d.metrics.commits.inc({ outcome: 'error' });
    throw new ShardStateError('consensus', 'the compare-and-set failed', {
      shardId: this.shardId,
      cause: err,
    });
  }

  /**
   * Deletes the versions behind the rollup just written, so that the earliest live entry is
   * always a rollup and opening reads at most about N entries. A reader more than one version
   * behind then catches up from the rollup (the slow path). Truncating exactly at the rollup
   * just written (not at an older one computed from N) stays right when N changes at runtime.
   */
  async #truncateBehind(rollupSeqno: bigint): Promise<void> {
    const keepFrom = rollupSeqno;
    if (keepFrom <= 1n) return;
    try {
      const deleted = await this.#d.consensus.truncate(this.shardId, keepFrom);
      this.#d.metrics.truncations.inc({ outcome: 'ok' });
      this.#log.debug({ keepFrom: String(keepFrom), deleted }, 'truncated');
    } catch (err) {
      this.#d.metrics.truncations.inc({ outcome: 'error' });
      this.#log.debug({ err }, 'truncation failed (best effort)');
    }
  }

  #throwIfClosed(): void {
    if (this.#closed) {
      throw new ShardStateError('closed', 'the shard was released', { shardId: this.shardId });
    }
  }

  /** Stops every timer and rejects pending waits with `closed`. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const closed = new ShardStateError('closed', 'the shard was released', {
      shardId: this.shardId,
    });
    for (const w of this.#waiters) w.reject(closed);
    this.#reorderTimer?.cancel();
    this.#reorderTimer = undefined;
    this.#poll?.timer?.cancel();
    this.#poll = undefined;
    this.#held.clear();
    this.#waiters.clear();
    this.#listeners.clear();
    this.#queued?.resolve();
    this.#queued = undefined;
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
