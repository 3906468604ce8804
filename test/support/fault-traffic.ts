/**
 * Traffic for the process-fault suites: writers and readers in this process, each a
 * `createPersistClient` on a Consensus URL and a broker URL, following one shard under the
 * checker while the suite kills or restarts something mid-traffic (`midway`). A writer whose
 * update fails (Consensus down) retries after a pause, like an application would.
 */
import { Registry } from 'prom-client';
import { createFlags, createPersistClient, type PersistClient } from '../../src/client/index.js';
import type { Consensus } from '../../src/consensus/index.js';
import type { ShardHandle } from '../../src/shard-state/index.js';
import { createChecker, type Divergence, trackProcessErrors } from './checker.js';
import { type ChainState, chainModel, chainStep } from './fault-model.js';

export interface TrafficOptions {
  consensusUrl: string;
  /** The checker reads the log through this (a separate connection). */
  checkConsensus: Consensus;
  pubsub: string;
  shardId: string;
  writers: number;
  readers: number;
  versionsPerWriter: number;
  /** Pause between a writer's commits, ms. */
  intervalMs: number;
  /**
   * Runs once a third of the commits are in; traffic goes on meanwhile, and the writers go on
   * past `versionsPerWriter` until a few commits landed after it resolved.
   */
  midway(): Promise<void>;
  /** After `midway` and the writers are done, every client must reach the head within this. */
  catchUpBoundMs: number;
}

export interface TrafficResult {
  commits: number;
  /** Commits when `midway` started and when it resolved: traffic went on across the fault. */
  commitsAtFaultStart: number;
  commitsAtFaultEnd: number;
  failedUpdates: number;
  observations: number;
  catchUpMs: number;
  divergences: Divergence[];
  processErrors: string[];
}

const sleep = (ms: number) =>
  new Promise<void>((r) => {
    setTimeout(r, ms).unref();
  });

export async function runTraffic(o: TrafficOptions): Promise<TrafficResult> {
  const errors = trackProcessErrors();
  const checker = createChecker(chainModel, o.checkConsensus);
  const stop = new AbortController();
  const clients: { name: string; persist: PersistClient; handle: ShardHandle<ChainState> }[] = [];
  const follows: Promise<void>[] = [];
  let commits = 0;
  let failedUpdates = 0;
  let commitsAtFaultStart = -1;
  let commitsAtFaultEnd = -1;
  try {
    for (let c = 0; c < o.writers + o.readers; c++) {
      const name = c < o.writers ? `w${c}` : `r${c - o.writers}`;
      const persist = await createPersistClient({
        consensus: o.consensusUrl,
        pubsub: o.pubsub,
        callerId: name,
        registry: new Registry(),
        config: createFlags({
          persist_pubsub_reconnect_backoff_ms: 50,
          persist_pubsub_connect_max_backoff_ms: 500,
          persist_next_listen_batch_retryer_fixed_sleep_ms: 100,
          persist_next_listen_batch_retryer_initial_backoff_ms: 20,
          persist_next_listen_batch_retryer_clamp_ms: 500,
        }),
        shardState: { truncate: false, rollupInterval: 5 },
      });
      const handle = await persist.openShard(o.shardId, chainModel);
      clients.push({ name, persist, handle });
      follows.push(checker.follow(name, handle, stop.signal));
      follows.push(checker.followVersions(`${name}/onVersion`, handle, stop.signal));
    }
    const total = o.writers * o.versionsPerWriter;
    let fired: Promise<void> | undefined;
    const writes = clients.slice(0, o.writers).map(async (w) => {
      // At least `versionsPerWriter` each, and on until 5 more after the fault ended.
      const more = () => commitsAtFaultEnd < 0 || commits < commitsAtFaultEnd + 5 * o.writers;
      for (let i = 1; i <= o.versionsPerWriter || more(); ) {
        try {
          await w.handle.update(chainStep(w.name, i), { signal: AbortSignal.timeout(20_000) });
          commits++;
          i++;
        } catch {
          failedUpdates++;
          await sleep(50);
        }
        if (fired === undefined && commits >= total / 3) {
          commitsAtFaultStart = commits;
          fired = o.midway().then(() => {
            commitsAtFaultEnd = commits;
          });
        }
        await sleep(o.intervalMs);
      }
    });
    await Promise.all(writes);
    await fired;
    const catchUpMs = await checker.awaitHead(
      o.shardId,
      clients.map((c) => ({ name: c.name, handle: c.handle })),
      o.catchUpBoundMs,
    );
    stop.abort();
    await Promise.all(follows);
    const report = await checker.verify();
    return {
      commits,
      commitsAtFaultStart,
      commitsAtFaultEnd,
      failedUpdates,
      observations: report.observations,
      catchUpMs,
      divergences: report.divergences,
      processErrors: [...errors.errors],
    };
  } finally {
    stop.abort();
    for (const c of clients) {
      c.handle.close();
      await c.persist.close();
    }
    errors.stop();
  }
}
