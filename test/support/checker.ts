/**
 * The fault suites' checker. For every reader it records each observed `{seqno, state}` and
 * proves:
 * - per reader and shard, observed seqnos strictly increase;
 * - a reader that follows with `onVersion` (`followVersions`) has seen the handle's seqno
 *   whenever it looks (the callback runs inside the apply, so it can never be behind);
 * - each observed state equals the fold of the Consensus log (version envelopes, decoded and
 *   applied from the model's initial state) up to that seqno, and every rollup in the log
 *   equals the fold at its seqno;
 * - after the faults stop, every reader reaches the head within a bound (`awaitHead`);
 * - no unhandled rejection or uncaught exception happened in this process (`trackProcessErrors`;
 *   child processes are judged by their exit status and stderr).
 * Shards under check must keep their whole log (`shardState: { truncate: false }`).
 */
import type { Consensus } from '../../src/consensus/index.js';
import { decodeEnvelope } from '../../src/shard-state/envelope.js';
import type { ShardHandle, ShardVersion, StateModel } from '../../src/shard-state/index.js';

export type DivergenceKind =
  | 'seqno_not_increasing'
  | 'state_mismatch'
  | 'beyond_log'
  | 'log_gap'
  | 'rollup_mismatch'
  | 'undecodable_log'
  | 'follower_behind';

export interface Divergence {
  kind: DivergenceKind;
  reader: string;
  shardId: string;
  seqno: bigint;
  detail: string;
}

export interface CheckReport {
  observations: number;
  /** Versions folded from Consensus, over all shards. */
  logVersions: number;
  divergences: Divergence[];
}

export interface Checker<S> {
  /** Records one observation (checks seqno order at once). */
  observe(reader: string, shardId: string, version: ShardVersion<S>): void;
  /**
   * Observes every state `handle.listen()` yields until `signal` aborts; resolves then.
   * Rejections other than the abort are recorded as divergences of kind `state_mismatch`.
   */
  follow(reader: string, handle: ShardHandle<S>, signal: AbortSignal): Promise<void>;
  /**
   * Observes the current state and then every version `handle.onVersion` reports until
   * `signal` aborts; resolves then. When it ends (and at every observation) the last observed
   * seqno must be the handle's: otherwise a divergence of kind `follower_behind`.
   */
  followVersions(reader: string, handle: ShardHandle<S>, signal: AbortSignal): Promise<void>;
  /**
   * Waits until every handle is at the shard's head in Consensus (read once now); resolves
   * with the time it took in ms, or rejects after `timeoutMs` naming the readers behind.
   */
  awaitHead(
    shardId: string,
    readers: ReadonlyArray<{ name: string; handle: ShardHandle<S> }>,
    timeoutMs: number,
  ): Promise<number>;
  /** Folds the Consensus log of every observed shard and compares every observation. */
  verify(): Promise<CheckReport>;
  /** Observations so far. */
  readonly observations: number;
}

export function createChecker<S, D>(model: StateModel<S, D>, consensus: Consensus): Checker<S> {
  // reader -> shard -> observations in order
  const seen = new Map<string, Map<string, ShardVersion<S>[]>>();
  const early: Divergence[] = [];
  let count = 0;

  const observe = (reader: string, shardId: string, v: ShardVersion<S>): void => {
    let byShard = seen.get(reader);
    if (byShard === undefined) {
      byShard = new Map();
      seen.set(reader, byShard);
    }
    let list = byShard.get(shardId);
    if (list === undefined) {
      list = [];
      byShard.set(shardId, list);
    }
    const prev = list[list.length - 1];
    if (prev !== undefined && v.seqno <= prev.seqno) {
      early.push({
        kind: 'seqno_not_increasing',
        reader,
        shardId,
        seqno: v.seqno,
        detail: `observed ${v.seqno} after ${prev.seqno}`,
      });
    }
    list.push({ seqno: v.seqno, state: v.state });
    count++;
  };

  async function fold(shardId: string): Promise<{ states: Map<bigint, S>; divs: Divergence[] }> {
    const states = new Map<bigint, S>([[0n, model.initial()]]);
    const divs: Divergence[] = [];
    let state = model.initial();
    let at = 0n;
    for (;;) {
      const page = await consensus.scan(shardId, at + 1n, 256);
      for (const entry of page) {
        const fail = (kind: DivergenceKind, detail: string) =>
          divs.push({ kind, reader: '(log)', shardId, seqno: entry.seqno, detail });
        if (entry.seqno !== at + 1n) {
          fail('log_gap', `log goes from ${at} to ${entry.seqno} (truncated? use truncate: false)`);
          return { states, divs };
        }
        try {
          const env = decodeEnvelope(entry.data, model.name, entry.seqno);
          state = model.apply(state, model.decodeDiff(env.diff));
          if (env.rollup !== undefined && !model.equals(model.decodeState(env.rollup), state)) {
            fail('rollup_mismatch', 'the rollup differs from the fold of the diffs');
          }
        } catch (err) {
          fail('undecodable_log', String(err));
          return { states, divs };
        }
        at = entry.seqno;
        states.set(at, state);
      }
      if (page.length < 256) break;
    }
    return { states, divs };
  }

  return {
    observe,
    get observations() {
      return count;
    },
    async follow(reader, handle, signal) {
      try {
        for await (const v of handle.listen({ signal })) observe(reader, handle.shardId, v);
      } catch (err) {
        if (signal.aborted) return;
        early.push({
          kind: 'state_mismatch',
          reader,
          shardId: handle.shardId,
          seqno: handle.seqno,
          detail: `listen failed: ${String(err)}`,
        });
      }
    },
    followVersions(reader, handle, signal) {
      const behind = (at: string, last: bigint) => {
        if (last === handle.seqno) return;
        early.push({
          kind: 'follower_behind',
          reader,
          shardId: handle.shardId,
          seqno: handle.seqno,
          detail: `${at}: last observed ${last}, the handle is at ${handle.seqno}`,
        });
      };
      let last = handle.seqno;
      observe(reader, handle.shardId, handle.snapshot());
      handle.onVersion(
        (v) => {
          last = v.seqno;
          observe(reader, handle.shardId, v);
          behind('in the callback', last);
        },
        { signal },
      );
      return new Promise<void>((resolve) => {
        const end = () => {
          behind('at the end', last);
          resolve();
        };
        if (signal.aborted) end();
        else signal.addEventListener('abort', end, { once: true });
      });
    },
    async awaitHead(shardId, readers, timeoutMs) {
      const head = (await consensus.head(shardId))?.seqno ?? 0n;
      const t0 = performance.now();
      const deadline = t0 + timeoutMs;
      for (;;) {
        const behind = readers.filter((r) => r.handle.seqno < head);
        if (behind.length === 0) return performance.now() - t0;
        if (performance.now() > deadline) {
          throw new Error(
            `after ${timeoutMs} ms, readers behind head ${head} of ${shardId}: ${behind
              .map((r) => `${r.name}@${r.handle.seqno}`)
              .join(', ')}`,
          );
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async verify() {
      const divergences = [...early];
      const shards = new Set<string>();
      for (const byShard of seen.values()) for (const s of byShard.keys()) shards.add(s);
      let logVersions = 0;
      for (const shardId of shards) {
        const { states, divs } = await fold(shardId);
        logVersions += states.size - 1;
        divergences.push(...divs);
        for (const [reader, byShard] of seen) {
          for (const v of byShard.get(shardId) ?? []) {
            const want = states.get(v.seqno);
            if (want === undefined) {
              divergences.push({
                kind: 'beyond_log',
                reader,
                shardId,
                seqno: v.seqno,
                detail: `observed seqno ${v.seqno} is not in the log (head ${states.size - 1})`,
              });
            } else if (!model.equals(v.state, want)) {
              divergences.push({
                kind: 'state_mismatch',
                reader,
                shardId,
                seqno: v.seqno,
                detail: `observed ${JSON.stringify(v.state)} but the log folds to ${JSON.stringify(want)}`,
              });
            }
          }
        }
      }
      return { observations: count, logVersions, divergences };
    },
  };
}

export interface ProcessErrors {
  readonly errors: readonly string[];
  stop(): void;
}

/** Records unhandled rejections and uncaught exceptions in this process until `stop()`. */
export function trackProcessErrors(): ProcessErrors {
  const errors: string[] = [];
  const onRejection = (reason: unknown) => errors.push(`unhandledRejection: ${String(reason)}`);
  const onException = (err: unknown) => errors.push(`uncaughtException: ${String(err)}`);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    errors,
    stop() {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    },
  };
}
