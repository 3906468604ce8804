/**
 * The per-process cache of shard states: one `Shard` per shard id whatever the number of
 * handles, subscribed (through `hooks.onSubscribe`) while any handle holds it and released
 * (`hooks.onUnsubscribe`) when the last one closes.
 */
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { toShardId } from '../protocol/index.js';
import { linkSignals, raceSignal, systemClock } from '../util/index.js';
import { BackgroundQueue } from './background-queue.js';
import { DEFAULT_SHARD_STATE_CONFIG, mergeConfig, type ShardStateConfig } from './config.js';
import { ShardStateError, throwIfAborted } from './errors.js';
import { createShardStateMetrics, type ShardStateMetrics } from './metrics.js';
import { persistStateModel } from './persist-model.js';
import { Shard, type ShardDeps } from './shard.js';
import { TimerQueue } from './timer-queue.js';
import type {
  FetchNowReason,
  OpenOptions,
  PubSubShardStatus,
  ReceiveDiffOptions,
  ReceiveOutcome,
  ShardHandle,
  ShardStateCache,
  ShardStateCacheOptions,
  ShardVersion,
  SignalOptions,
  StateModel,
  UpdateFn,
  UpdateResult,
  VersionCallback,
} from './types.js';
import { WakeQueue } from './waiters.js';

const FETCH_NOW_REASONS: ReadonlySet<string> = new Set(['gap_notice', 'reconnect', 'refresh']);

interface Entry {
  // biome-ignore lint/suspicious/noExplicitAny: one cache holds shards of any model
  shard: Shard<any, any>;
  refs: number;
  ready: Promise<void>;
  pubsub: PubSubShardStatus;
}

const PUBSUB_OK: PubSubShardStatus = Object.freeze({ state: 'ok' });

/**
 * Creates a shard-state cache over `consensus`. Validates its options once, here; a bad field
 * throws `invalid_argument` naming it.
 */
export function createShardStateCache(options: ShardStateCacheOptions): ShardStateCache {
  if (typeof options !== 'object' || options === null) {
    throw new ShardStateError('invalid_argument', 'options must be an object');
  }
  const { consensus } = options;
  if (typeof consensus !== 'object' || consensus === null || typeof consensus.scan !== 'function') {
    throw new ShardStateError('invalid_argument', 'options.consensus must be a Consensus');
  }
  if (options.random !== undefined && typeof options.random !== 'function') {
    throw new ShardStateError('invalid_argument', 'options.random must be a function');
  }
  if (options.model !== undefined) checkModel(options.model, 'options.model');
  const config = mergeConfig(DEFAULT_SHARD_STATE_CONFIG, options.config);
  return new Cache(options, config);
}

function checkModel(model: unknown, what: string): void {
  const m = model as Partial<StateModel<unknown, unknown>> | null;
  const fns = [
    'initial',
    'apply',
    'diff',
    'isEmptyDiff',
    'equals',
    'encodeState',
    'decodeState',
    'encodeDiff',
    'decodeDiff',
  ] as const;
  if (
    typeof m !== 'object' ||
    m === null ||
    typeof m.name !== 'string' ||
    m.name === '' ||
    fns.some((f) => typeof m[f] !== 'function')
  ) {
    throw new ShardStateError('invalid_argument', `${what} must be a StateModel`);
  }
}

class Cache implements ShardStateCache {
  readonly #options: ShardStateCacheOptions;
  readonly #shards = new Map<string, Entry>();
  readonly #metrics: ShardStateMetrics;
  /** Every shard's dependencies: one object, shared. */
  readonly #deps: ShardDeps;
  readonly #defaultModel: StateModel<unknown, unknown>;
  #config: Readonly<ShardStateConfig>;
  #closed = false;

  constructor(options: ShardStateCacheOptions, config: Readonly<ShardStateConfig>) {
    this.#options = options;
    this.#config = config;
    this.#defaultModel =
      options.model ?? (persistStateModel as unknown as StateModel<unknown, unknown>);
    this.#metrics = createShardStateMetrics(
      options.registry ?? new Registry(),
      () => this.#shards.size,
    );
    const clock = options.clock ?? systemClock;
    const random = options.random ?? Math.random;
    const currentConfig = () => this.#config;
    this.#deps = {
      consensus: options.consensus,
      clock,
      poll: {
        clock,
        // Polls are awaited (a waitForSeqno, a listen loop): their timer keeps the process alive.
        timers: new TimerQueue(clock, true),
        random,
        config: currentConfig,
      },
      wakes: new WakeQueue(),
      background: new BackgroundQueue(),
      random,
      logger: options.logger ?? pino({ level: 'silent' }),
      metrics: this.#metrics,
      hooks: options.hooks ?? {},
      config: currentConfig,
    };
  }

  get config(): Readonly<ShardStateConfig> {
    return this.#config;
  }

  setConfig(partial: Partial<ShardStateConfig>): void {
    this.#config = mergeConfig(this.#config, partial);
    for (const { shard } of this.#shards.values()) shard.configChanged();
  }

  openShards(): string[] {
    return [...this.#shards.keys()];
  }

  appliedSeqno(shardId: string): bigint | undefined {
    const seqno = this.#shards.get(shardId)?.shard.seqno;
    // Seqnos start at 1: a state at 0 has applied nothing.
    return seqno === undefined || seqno === 0n ? undefined : seqno;
  }

  setPubSubStatus(shardId: string, status: PubSubShardStatus): void {
    const entry = this.#shards.get(shardId);
    if (entry !== undefined) entry.pubsub = status;
  }

  async open<S = unknown, D = unknown>(
    shardId: string,
    model?: StateModel<S, D>,
    options?: OpenOptions,
  ): Promise<ShardHandle<S>> {
    if (this.#closed) throw new ShardStateError('closed', 'the shard-state cache is closed');
    // The one shard id rule (src/protocol): refused here, before Consensus or pubsub sees it.
    toShardId(shardId);
    if (model !== undefined) checkModel(model, 'model');
    throwIfAborted(options?.signal, shardId);
    const wanted = (model ?? this.#defaultModel) as StateModel<S, D>;
    let entry = this.#shards.get(shardId);
    if (entry !== undefined && entry.shard.model !== wanted) {
      throw new ShardStateError(
        'model_mismatch',
        `shard ${shardId} is held with model ${entry.shard.model.name}, not ${wanted.name}`,
        { shardId },
      );
    }
    if (entry === undefined) {
      const shard = new Shard<S, D>(this.#deps, shardId, wanted);
      const created: Entry = { shard, refs: 0, ready: Promise.resolve(), pubsub: PUBSUB_OK };
      entry = created;
      this.#shards.set(shardId, created);
      this.#callHook('onSubscribe', () => this.#options.hooks?.onSubscribe?.(shardId));
      created.ready = shard.load();
      // A load failure is reported to the openers; keep it from being unhandled meanwhile.
      created.ready.catch(() => {});
    }
    const held = entry;
    held.refs++;
    try {
      await raceSignal(held.ready, options?.signal, abortedFor(shardId));
    } catch (err) {
      this.#release(shardId, held);
      if (err instanceof ShardStateError) throw err;
      throw new ShardStateError('consensus', `opening shard ${shardId} failed`, {
        shardId,
        cause: err,
      });
    }
    return new Handle<S>(held as Entry & { shard: Shard<S, unknown> }, () =>
      this.#release(shardId, held),
    );
  }

  #release(shardId: string, entry: Entry): void {
    entry.refs--;
    if (entry.refs > 0 || this.#shards.get(shardId) !== entry) return;
    this.#shards.delete(shardId);
    entry.shard.close();
    this.#metrics.forgetShard(shardId);
    this.#callHook('onUnsubscribe', () => this.#options.hooks?.onUnsubscribe?.(shardId));
  }

  receiveDiff(
    shardId: string,
    seqno: bigint,
    diff: Uint8Array,
    options?: ReceiveDiffOptions,
  ): ReceiveOutcome {
    const entry = typeof shardId === 'string' ? this.#shards.get(shardId) : undefined;
    if (entry === undefined) return 'not_open';
    if (typeof seqno !== 'bigint' || seqno < 0n || !(diff instanceof Uint8Array)) {
      this.#metrics.diffInvalid.inc({ shard: shardId, reason: 'seqno' });
      this.#deps.logger.warn(
        { shardId },
        'receiveDiff: seqno must be a bigint >= 0 and diff bytes',
      );
      void entry.shard.request('bad_diff');
      return 'refetch';
    }
    return entry.shard.receive(seqno, diff, options);
  }

  async fetchNow(shardId: string, reason: FetchNowReason, options?: SignalOptions): Promise<void> {
    if (!FETCH_NOW_REASONS.has(reason)) {
      throw new ShardStateError('invalid_argument', `fetchNow reason ${String(reason)} is unknown`);
    }
    throwIfAborted(options?.signal, shardId);
    const entry = this.#shards.get(shardId);
    if (entry === undefined) return;
    const read = entry.ready.catch(() => {}).then(() => entry.shard.request(reason));
    await raceSignal(read, options?.signal, abortedFor(shardId));
  }

  #callHook(name: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#deps.logger.error({ err, hook: name }, 'a shard-state hook threw');
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#deps.background.drain();
    for (const [shardId, entry] of [...this.#shards]) {
      entry.refs = 1;
      this.#release(shardId, entry);
    }
    this.#metrics.detach();
  }
}

/** The error a call of `shardId` rejects with when its signal aborts. */
const abortedFor =
  (shardId: string) =>
  (signal: AbortSignal): ShardStateError =>
    new ShardStateError('aborted', 'the call was aborted', { shardId, cause: signal.reason });

const CLOSED = Symbol('closed');

/** One opener's view of a shared shard; closing it releases one reference. */
class Handle<S> implements ShardHandle<S> {
  readonly #entry: Entry;
  readonly #shard: Shard<S, unknown>;
  readonly #release: () => void;
  #closed = false;
  /**
   * Aborted on close: pending updates listen to it (pending waits are released by the shard).
   * Made on the first update: a reader's handle needs none.
   */
  #closingController: AbortController | undefined;
  #refs = 1;

  constructor(entry: Entry & { shard: Shard<S, unknown> }, release: () => void) {
    this.#entry = entry;
    this.#shard = entry.shard;
    this.#release = release;
  }

  get pubsubStatus(): PubSubShardStatus {
    return this.#entry.pubsub;
  }

  get shardId(): string {
    return this.#shard.shardId;
  }

  get state(): S {
    return this.#shard.state;
  }

  get seqno(): bigint {
    return this.#shard.seqno;
  }

  snapshot(): ShardVersion<S> {
    return this.#shard.snapshot();
  }

  #checkOpen(): void {
    if (this.#closed) throw this.#closedError();
  }

  #closedError(): ShardStateError {
    return new ShardStateError('closed', 'the handle is closed', { shardId: this.shardId });
  }

  async update(fn: UpdateFn<S>, options?: SignalOptions): Promise<UpdateResult<S>> {
    this.#checkOpen();
    if (typeof fn !== 'function') {
      throw new ShardStateError('invalid_argument', 'update needs a function');
    }
    const user = options?.signal;
    // With no signal of the caller's, the handle's own is enough: no linked signal per update.
    this.#closingController ??= new AbortController();
    const closing = this.#closingController.signal;
    const link = user === undefined ? undefined : linkSignals(user, closing);
    try {
      return await this.#shard.update(fn, link?.signal ?? closing);
    } catch (err) {
      throw this.#mapAbort(err, user);
    } finally {
      link?.unlink();
    }
  }

  /** Not async: the shard's own promise, resolved with the snapshot (one promise per wait). */
  waitForSeqno(seqno: bigint, options?: SignalOptions): Promise<ShardVersion<S>> {
    if (this.#closed) return Promise.reject(this.#closedError());
    if (typeof seqno !== 'bigint') {
      return Promise.reject(new ShardStateError('invalid_argument', 'seqno must be a bigint'));
    }
    return this.#shard.waitFor(seqno, options?.signal, this);
  }

  #mapAbort(err: unknown, userSignal: AbortSignal | undefined): unknown {
    if (err instanceof ShardStateError && err.code !== 'aborted') return err;
    if (this.#closed && !userSignal?.aborted) {
      return new ShardStateError('closed', 'the handle was closed', { shardId: this.shardId });
    }
    if (userSignal?.aborted) {
      return new ShardStateError('aborted', 'the call was aborted', {
        shardId: this.shardId,
        cause: userSignal.reason,
      });
    }
    return err;
  }

  async refresh(options?: SignalOptions): Promise<ShardVersion<S>> {
    this.#checkOpen();
    throwIfAborted(options?.signal, this.shardId);
    await raceSignal(this.#shard.request('refresh'), options?.signal, abortedFor(this.shardId));
    return this.#shard.snapshot();
  }

  onVersion(fn: VersionCallback<S>, options?: SignalOptions): () => void {
    this.#checkOpen();
    if (typeof fn !== 'function') {
      throw new ShardStateError('invalid_argument', 'onVersion needs a function');
    }
    return this.#shard.follow(fn, options?.signal, this);
  }

  listen(options?: SignalOptions): AsyncIterableIterator<ShardVersion<S>> {
    this.#checkOpen();
    return this.#listen(options?.signal);
  }

  async *#listen(signal: AbortSignal | undefined): AsyncGenerator<ShardVersion<S>> {
    // The iterator holds its own reference, so the shard stays while the loop runs.
    this.#refs++;
    try {
      let last = -1n;
      for (;;) {
        if (this.#closed) return;
        const snap = this.#shard.snapshot();
        if (snap.seqno > last) {
          last = snap.seqno;
          yield snap;
          continue;
        }
        try {
          await this.#shard.waitFor(last + 1n, signal, this);
        } catch (err) {
          if (err instanceof ShardStateError && err.code === 'closed') return;
          throw err;
        }
      }
    } finally {
      this.#unref();
    }
  }

  #unref(): void {
    this.#refs--;
    if (this.#refs === 0) this.#release();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closingController?.abort(CLOSED);
    this.#shard.releaseOwner(this);
    this.#unref();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
