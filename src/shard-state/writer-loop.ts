/**
 * The writer path of one shard: compute the next state, compare-and-set its envelope at
 * `seqno + 1`, apply it locally and hand it to the `publish` hook. A lost compare-and-set reads
 * the newer versions and retries on the writer schedule (`writerInitialBackoffMs` doubling to
 * `writerMaxBackoffMs`, jittered; docs/architecture.md "Polling fallback"); an indeterminate
 * error re-reads before deciding; a determinate `unavailable` is retried; anything else is the
 * caller's. Each compare-and-set is counted once, under its outcome.
 */
import type { Logger } from 'pino';
import { type Consensus, ConsensusError, isIndeterminate } from '../consensus/index.js';
import { type Clock, sleep, type Timer } from '../util/index.js';
import type { BackgroundQueue } from './background-queue.js';
import { jitterWith, type ShardStateConfig, writerDelayMs } from './config.js';
import { type Envelope, encodeEnvelope } from './envelope.js';
import { ShardStateError, throwIfAborted } from './errors.js';
import type { ShardStateMetrics } from './metrics.js';
import type { PublishEvent, StateModel, UpdateFn, UpdateResult } from './types.js';

/** What the writer needs of the shard it writes to. */
export interface WriterHost<S> {
  readonly shardId: string;
  readonly seqno: bigint;
  readonly state: S;
  readonly closed: boolean;
  /** Applies the version this writer just committed at `seqno` (if the state is still below). */
  applyCommitted(seqno: bigint, state: S, nowMs: number): void;
  /** Reads the versions that beat this writer; resolves with that read's error, if any. */
  readAfterMismatch(): Promise<unknown>;
  /** Hands a committed version to the `publish` hook. */
  publish(event: PublishEvent): void;
}

export interface WriterDeps<S, D> {
  consensus: Consensus;
  model: StateModel<S, D>;
  clock: Clock;
  random: () => number;
  logger: Logger;
  metrics: ShardStateMetrics;
  config: () => Readonly<ShardStateConfig>;
  /** Where the truncation behind a rollup runs: a few per turn, not in the commit's turn. */
  background: BackgroundQueue;
}

type CasOutcome = 'committed' | 'mismatch' | 'unavailable';

/**
 * Where in the rollup interval a shard's rollups fall: 32-bit FNV-1a of its id. Shards that
 * commit in lockstep (created together, one cadence: e2e's 1000 shards, or a cluster's shards
 * advanced on one timestamp tick) would otherwise all write their rollup, and truncate behind
 * it, in the same commit round; with a phase each round holds about 1/N of them.
 */
export function rollupPhase(shardId: string): bigint {
  let h = 0x811c9dc5;
  for (let i = 0; i < shardId.length; i++) {
    h ^= shardId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return BigInt(h >>> 0);
}

/**
 * Whether the version at `seqno` carries a full-state rollup: the first version, and every
 * `interval`-th after the shard's phase. Which versions hold rollups is the writer's choice
 * only: readers start from the newest rollup they find, whatever its seqno.
 */
export function isRollupSeqno(seqno: bigint, interval: number, phase: bigint): boolean {
  return seqno === 1n || (seqno + phase) % BigInt(interval) === 0n;
}

export class WriterLoop<S, D> {
  readonly #host: WriterHost<S>;
  readonly #d: WriterDeps<S, D>;
  /** Re-timers of the writers' sleeping backoffs, so a config change reaches them at once. */
  readonly #sleeps = new Set<() => void>();
  /** The rollup whose truncation is queued and not yet started. */
  #truncateAt: bigint | undefined;
  /** This shard's `rollupPhase`. */
  readonly #rollupPhase: bigint;

  constructor(host: WriterHost<S>, deps: WriterDeps<S, D>) {
    this.#host = host;
    this.#d = deps;
    this.#rollupPhase = rollupPhase(host.shardId);
  }

  /** Re-times every sleeping backoff under the current config. */
  configChanged(): void {
    for (const retime of this.#sleeps) retime();
  }

  async update(fn: UpdateFn<S>, signal: AbortSignal | undefined): Promise<UpdateResult<S>> {
    const host = this.#host;
    const { consensus, model, clock, metrics } = this.#d;
    let retries = 0;
    for (let attempt = 1; ; attempt++) {
      if (host.closed) {
        throw new ShardStateError('closed', 'the shard was released', { shardId: host.shardId });
      }
      throwIfAborted(signal, host.shardId);
      const seqno = host.seqno;
      const state = host.state;
      const nowMs = clock.nowMs();
      const next = fn(state, { seqno, nowMs, attempt });
      const seqnoTo = seqno + 1n;
      const cfg = this.#d.config();
      const isRollup = isRollupSeqno(seqnoTo, cfg.rollupInterval, this.#rollupPhase);
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
          { shardId: host.shardId, cause: err },
        );
      }
      if (next === undefined || envelope === undefined) {
        metrics.commits.inc({ outcome: 'noop' });
        return { outcome: 'noop', seqno, state, attempts: attempt - 1 };
      }
      const data = encodeEnvelope(envelope);
      let outcome: CasOutcome;
      try {
        outcome = await consensus.compareAndSet(
          host.shardId,
          seqno === 0n ? null : seqno,
          { seqno: seqnoTo, data },
          { signal },
        );
        if (outcome === 'committed') metrics.committed.value++;
        else metrics.commits.inc({ outcome });
      } catch (err) {
        outcome = await this.#afterCasError(err, seqnoTo, data, signal);
      }
      if (outcome === 'committed') {
        host.applyCommitted(seqnoTo, next, nowMs);
        // What other processes get is the version without its rollup: for most versions that
        // is exactly what was stored, so it is encoded once.
        const pushed =
          envelope.rollup === undefined ? data : encodeEnvelope({ ...envelope, rollup: undefined });
        // The commit time is when the compare-and-set returned, not when the diff was built
        // (`wallTimeMs`, stored in the envelope before the write): e2e latency then measures
        // commit -> applied, without the Consensus write itself.
        host.publish({
          shardId: host.shardId,
          seqno: seqnoTo,
          diff: pushed,
          commitTimeMs: clock.nowMs(),
        });
        if (isRollup && cfg.truncate) this.#queueTruncation(seqnoTo);
        return { outcome: 'committed', seqno: seqnoTo, state: next, attempts: attempt };
      }
      if (outcome === 'mismatch') {
        const err = await host.readAfterMismatch();
        // A log this model cannot follow will not heal by retrying: report it.
        if (err instanceof ShardStateError && err.code === 'corrupt_log') throw err;
      }
      try {
        await this.#backoff(retries++, signal);
      } catch (err) {
        throw new ShardStateError('aborted', 'the update was aborted', {
          shardId: host.shardId,
          cause: err,
        });
      }
    }
  }

  /**
   * The writer's sleep after its `retry`-th lost compare-and-set; re-timed under a new config
   * while it sleeps. Keeps the process alive (the caller awaits it); rejects on abort.
   */
  #backoff(retry: number, signal: AbortSignal | undefined): Promise<void> {
    const { clock } = this.#d;
    const jitterUnit = this.#d.random();
    const startMs = clock.nowMs();
    return new Promise<void>((resolve, reject) => {
      let timer: Timer | undefined;
      const done = () => {
        this.#sleeps.delete(retime);
        signal?.removeEventListener('abort', onAbort);
        timer?.cancel();
      };
      const retime = () => {
        timer?.cancel();
        const cfg = this.#d.config();
        const delay = jitterWith(writerDelayMs(cfg, retry), cfg.pollJitterRatio, jitterUnit);
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
      this.#sleeps.add(retime);
      retime();
    });
  }

  /**
   * After a compare-and-set threw: an indeterminate error re-reads the version to learn whether
   * it landed; a determinate `unavailable` is retried; anything else is the caller's. Counts
   * the compare-and-set once: `indeterminate` (and then what the re-read found), `unavailable`
   * or `error`.
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
  ): Promise<CasOutcome> {
    const { shardId } = this.#host;
    const { metrics, logger } = this.#d;
    if (isIndeterminate(err)) {
      metrics.commits.inc({ outcome: 'indeterminate' });
      logger.info({ err, seqno: String(seqnoTo) }, 'compare-and-set indeterminate; re-reading');
      for (;;) {
        throwIfAborted(signal, shardId);
        try {
          metrics.consensusReads.inc({ reason: 'indeterminate' });
          const [entry] = await this.#d.consensus.scan(shardId, seqnoTo, 1, { signal });
          // Not there: a version above it would mean ours lost; none means it did not land.
          const landed =
            entry !== undefined && entry.seqno === seqnoTo && bytesEqual(entry.data, data);
          const outcome = landed ? 'committed' : 'mismatch';
          metrics.commits.inc({ outcome });
          return outcome;
        } catch (readErr) {
          if (readErr instanceof ConsensusError && readErr.code === 'aborted') break;
          if (readErr instanceof ConsensusError && readErr.code === 'closed') break;
          logger.warn({ err: readErr }, 're-read after an indeterminate error failed');
          await sleep(this.#d.config().writerInitialBackoffMs, {
            clock: this.#d.clock,
            signal,
          }).catch(() => {});
        }
      }
    }
    if (err instanceof ConsensusError && err.code === 'unavailable') {
      logger.warn({ err }, 'Consensus unavailable; retrying the update');
      metrics.commits.inc({ outcome: 'unavailable' });
      return 'unavailable';
    }
    if (signal?.aborted || (err instanceof ConsensusError && err.code === 'aborted')) {
      throw new ShardStateError('aborted', 'the update was aborted', { shardId, cause: err });
    }
    metrics.commits.inc({ outcome: 'error' });
    throw new ShardStateError('consensus', 'the compare-and-set failed', { shardId, cause: err });
  }

  /**
   * Queues the truncation behind `rollupSeqno` on the cache's background queue. If the previous
   * one is still queued when the next rollup is written, the queue has had no turn for a whole
   * rollup interval (a caller that commits without ever yielding to the event loop: a tight
   * `await update()` loop on a Consensus that answers in microtasks), so the truncation behind
   * the newer rollup, which also deletes what the older one would have, runs at once instead:
   * the log stays bounded.
   */
  #queueTruncation(rollupSeqno: bigint): void {
    // The first version is a rollup with nothing behind it.
    if (rollupSeqno <= 1n) return;
    if (this.#truncateAt !== undefined) {
      // The queued task finds nothing to do when its turn comes.
      this.#truncateAt = undefined;
      void this.#truncateBehind(rollupSeqno);
      return;
    }
    this.#truncateAt = rollupSeqno;
    this.#d.background.run(() => {
      const at = this.#truncateAt;
      this.#truncateAt = undefined;
      if (at !== undefined) void this.#truncateBehind(at);
    });
  }

  /**
   * Deletes the versions behind the rollup just written, so that the earliest live entry is
   * always a rollup and opening reads at most about N entries. A reader more than one version
   * behind then catches up from the rollup (the slow path). Truncating exactly at the rollup
   * just written (not at an older one computed from N) stays right when N changes at runtime.
   */
  async #truncateBehind(rollupSeqno: bigint): Promise<void> {
    if (rollupSeqno <= 1n) return;
    const { metrics, logger } = this.#d;
    try {
      const deleted = await this.#d.consensus.truncate(this.#host.shardId, rollupSeqno);
      metrics.truncations.inc({ outcome: 'ok' });
      logger.debug({ keepFrom: String(rollupSeqno), deleted }, 'truncated');
    } catch (err) {
      metrics.truncations.inc({ outcome: 'error' });
      logger.debug({ err }, 'truncation failed (best effort)');
    }
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
