/**
 * One randomized fault schedule, derived entirely from a seed: writers and readers (each a
 * `createPersistClient` with its own pubsub connection through a fault transport and a fault
 * TCP proxy, its own skewed clock, and a Consensus that fails like a real store) on one
 * shard, a real gRPC broker on loopback (with its own skewed clock), and a timeline of
 * connection faults and broker restarts. Faults stop when the writers finish; then every
 * client must reach the head within the bound, and the checker folds the Consensus log and
 * compares every state any client observed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { type Broker, createBroker } from '../../src/broker/index.js';
import {
  createFlags,
  createGrpcTransport,
  createPersistClient,
  createPubSubClient,
  type PersistClient,
  type PubSubClient,
} from '../../src/client/index.js';
import { type Consensus, createMemoryConsensus, openConsensus } from '../../src/consensus/index.js';
import type { ShardHandle } from '../../src/shard-state/index.js';
import { systemClock } from '../../src/util/index.js';
import { createChecker, type Divergence, trackProcessErrors } from './checker.js';
import {
  type ConsensusFaultRates,
  createFaultConsensus,
  type FaultConsensus,
  NO_CONSENSUS_FAULTS,
} from './fault-consensus.js';
import { type ChainState, chainModel, chainStep } from './fault-model.js';
import { createFaultProxy, type FaultProxy } from './fault-proxy.js';
import { createRng } from './fault-rng.js';
import {
  createFaultTransport,
  type FaultTransport,
  type MessageFaultRates,
  NO_FAULTS,
} from './fault-transport.js';

/** The clients' polling schedule in these schedules (flags), in ms. */
export const POLL_FIRST_SLEEP_MS = 100;
export const POLL_INITIAL_BACKOFF_MS = 20;
export const POLL_MAX_BACKOFF_MS = 500;
/**
 * After the faults stop, a waiting reader polls within `POLL_MAX_BACKOFF_MS` × 1.1 (jitter);
 * the bound adds one Consensus read and a margin for a heavily loaded 2-core machine.
 */
export const CATCH_UP_BOUND_MS = Math.ceil(POLL_MAX_BACKOFF_MS * 1.1) + 9_500;

export type ConnAction = 'cut' | 'stall' | 'slow' | 'half_open' | 'broker_restart';

export interface SchedulePlan {
  seed: number;
  backend: 'mem' | 'sqlite';
  writers: number;
  readers: number;
  versionsPerWriter: number;
  rates: MessageFaultRates;
  /** Clock offset of each client, ms (writers first). */
  skewMs: number[];
  /** Clock offset of the broker (its stamps on forwarded messages), ms. */
  brokerSkewMs: number;
  actions: { atMs: number; action: ConnAction; client: number; ms: number }[];
  rollupInterval: number;
  /** Consensus faults seen by every client (each through its own wrapper). */
  consensusRates: ConsensusFaultRates;
}

export interface ScheduleResult {
  plan: SchedulePlan;
  /** Faults injected, by kind. */
  faults: Record<string, number>;
  commits: number;
  observations: number;
  /** From the faults stopping to every client at the head, ms. */
  catchUpMs: number;
  divergences: Divergence[];
  processErrors: string[];
}

/** The schedule a seed stands for (pure). */
export function planSchedule(seed: number): SchedulePlan {
  const rng = createRng(seed);
  const writers = rng.int(1, 3);
  const readers = rng.int(1, 3);
  const versionsPerWriter = rng.int(8, 25);
  const rates: MessageFaultRates = {
    drop: rng.next() * 0.3,
    duplicate: rng.next() * 0.15,
    reorder: rng.next() * 0.15,
    delay: rng.next() * 0.15,
    maxDelayMs: rng.int(1, 40),
    cut: rng.next() * 0.03,
  };
  const clients = writers + readers;
  const skewMs = Array.from({ length: clients }, () =>
    rng.chance(0.5) ? 0 : rng.int(-120_000, 120_000),
  );
  const brokerSkewMs = rng.chance(0.5) ? 0 : rng.int(-300_000, 300_000);
  const kinds: ConnAction[] = ['cut', 'stall', 'slow', 'half_open', 'broker_restart'];
  const actions = Array.from({ length: rng.int(0, 4) }, () => ({
    atMs: rng.int(0, 400),
    action: rng.pick(kinds),
    client: rng.int(0, clients - 1),
    ms: rng.int(20, 300),
  })).sort((a, b) => a.atMs - b.atMs);
  return {
    seed,
    backend: rng.chance(0.25) ? 'sqlite' : 'mem',
    writers,
    readers,
    versionsPerWriter,
    rates,
    skewMs,
    brokerSkewMs,
    actions,
    rollupInterval: rng.int(2, 12),
    consensusRates: rng.chance(0.5)
      ? NO_CONSENSUS_FAULTS
      : {
          casRefused: rng.next() * 0.1,
          casAppliedLost: rng.next() * 0.1,
          casLost: rng.next() * 0.1,
          readFailed: rng.next() * 0.1,
        },
  };
}

const SHARD = (seed: number) =>
  `s00000000-0000-4000-8000-${seed.toString(16).padStart(12, '0').slice(-12)}`;

const sleep = (ms: number) =>
  new Promise<void>((r) => {
    setTimeout(r, ms).unref();
  });

interface Client {
  name: string;
  store: FaultConsensus;
  proxy: FaultProxy;
  transport: FaultTransport;
  pubsub: PubSubClient;
  persist: PersistClient;
  handle: ShardHandle<ChainState>;
}

export async function runSchedule(seed: number): Promise<ScheduleResult> {
  const plan = planSchedule(seed);
  const rng = createRng(seed).fork('run');
  const errors = trackProcessErrors();
  const shardId = SHARD(seed);
  const brokerNow = () => Date.now() + plan.brokerSkewMs;
  let dir: string | undefined;
  let consensus: Consensus;
  if (plan.backend === 'sqlite') {
    dir = mkdtempSync(join(tmpdir(), 'fault-schedule-'));
    consensus = await openConsensus(`sqlite:${join(dir, 'c.db')}`);
  } else {
    consensus = createMemoryConsensus();
  }
  let broker: Broker = createBroker({ listen: { host: '127.0.0.1', port: 0 }, now: brokerNow });
  await broker.start();
  const brokers: Broker[] = [broker];
  const clients: Client[] = [];
  const follows: Promise<void>[] = [];
  const stopFollow = new AbortController();
  const checker = createChecker(chainModel, consensus);
  const brokerRestarts = { n: 0 };
  let commits = 0;
  let failedUpdates = 0;
  try {
    const total = plan.writers + plan.readers;
    for (let c = 0; c < total; c++) {
      const name = c < plan.writers ? `w${c}` : `r${c - plan.writers}`;
      const skew = plan.skewMs[c] ?? 0;
      const now = () => Date.now() + skew;
      const proxy = await createFaultProxy(broker.address.port);
      const flags = createFlags({
        persist_pubsub_reconnect_backoff_ms: 50,
        persist_pubsub_connect_attempt_timeout_ms: 1000,
        persist_pubsub_connect_max_backoff_ms: 400,
        persist_next_listen_batch_retryer_fixed_sleep_ms: POLL_FIRST_SLEEP_MS,
        persist_next_listen_batch_retryer_initial_backoff_ms: POLL_INITIAL_BACKOFF_MS,
        persist_next_listen_batch_retryer_clamp_ms: POLL_MAX_BACKOFF_MS,
      });
      const registry = new Registry();
      const transport = createFaultTransport(
        createGrpcTransport({
          url: proxy.url,
          callerId: name,
          keepaliveTimeMs: 300,
          keepaliveTimeoutMs: 600,
          clock: { ...systemClock, nowMs: now },
        }),
        seed,
        name,
        plan.rates,
      );
      const crng = rng.fork(name);
      const pubsub = createPubSubClient(transport, {
        flags,
        registry,
        clock: { ...systemClock, nowMs: now },
        random: () => crng.next(),
        initialConnectBackoffMs: 20,
      });
      const store = createFaultConsensus(consensus, seed, name, plan.consensusRates);
      const persist = await createPersistClient({
        consensus: store,
        pubsub,
        callerId: name,
        config: flags,
        registry,
        shardState: { truncate: false, rollupInterval: plan.rollupInterval },
      });
      // Opening reads Consensus, which may fail under the schedule's faults: retry.
      let handle: ShardHandle<ChainState> | undefined;
      for (let attempt = 1; handle === undefined; attempt++) {
        try {
          handle = await persist.openShard(shardId, chainModel);
        } catch (err) {
          if (attempt >= 50) throw err;
          await sleep(5);
        }
      }
      clients.push({ name, store, proxy, transport, pubsub, persist, handle });
      follows.push(checker.follow(name, handle, stopFollow.signal));
      follows.push(checker.followVersions(`${name}/onVersion`, handle, stopFollow.signal));
    }

    // The connection-fault timeline runs while the writers write.
    let writing = true;
    const timeline = (async () => {
      const t0 = Date.now();
      for (const a of plan.actions) {
        if (!writing) break;
        await sleep(Math.max(0, t0 + a.atMs - Date.now()));
        const target = clients[a.client] as Client;
        switch (a.action) {
          case 'cut':
            target.proxy.cut();
            break;
          case 'stall':
            target.proxy.stall(a.ms);
            break;
          case 'slow':
            target.proxy.slow(Math.min(50, a.ms / 6));
            break;
          case 'half_open':
            target.proxy.halfOpen();
            break;
          case 'broker_restart': {
            brokerRestarts.n++;
            broker.destroy();
            await sleep(a.ms / 4);
            broker = createBroker({ listen: { host: '127.0.0.1', port: 0 }, now: brokerNow });
            await broker.start();
            brokers.push(broker);
            for (const c of clients) {
              c.proxy.retarget(broker.address.port);
              c.proxy.cut();
            }
            break;
          }
        }
      }
    })();

    const writes = clients.slice(0, plan.writers).map(async (w, wi) => {
      const wrng = rng.fork(`write${wi}`);
      for (let i = 1; i <= plan.versionsPerWriter; i++) {
        // A Consensus fault may fail the update (after its own retries); the application
        // retries. If the lost attempt did apply, the log holds (w, i) twice: still a valid log.
        for (let attempt = 1; ; attempt++) {
          try {
            await w.handle.update(chainStep(w.name, i));
            break;
          } catch (err) {
            failedUpdates++;
            if (attempt >= 50) throw err;
            await sleep(5);
          }
        }
        commits++;
        const pause = wrng.int(0, 6);
        if (pause > 0) await sleep(pause);
      }
    });
    await Promise.all(writes);
    writing = false;
    await timeline;

    // Faults stop here.
    for (const c of clients) {
      c.transport.setRates(NO_FAULTS);
      c.store.setRates(NO_CONSENSUS_FAULTS);
      c.proxy.heal();
    }
    const catchUpMs = await checker.awaitHead(
      shardId,
      clients.map((c) => ({ name: c.name, handle: c.handle })),
      CATCH_UP_BOUND_MS,
    );
    stopFollow.abort();
    await Promise.all(follows);
    const report = await checker.verify();

    const faults: Record<string, number> = {
      dropped: 0,
      duplicated: 0,
      reordered: 0,
      delayed: 0,
      cut_msg: 0,
      cut_tcp: 0,
      stall: 0,
      slow: 0,
      half_open: 0,
      broker_restart: brokerRestarts.n,
      skewed_clients: plan.skewMs.filter((s) => s !== 0).length,
      skewed_brokers: plan.brokerSkewMs === 0 ? 0 : 1,
      cas_refused: 0,
      cas_applied_lost: 0,
      cas_lost: 0,
      read_failed: 0,
      failed_updates: failedUpdates,
    };
    for (const c of clients) {
      faults.dropped = (faults.dropped ?? 0) + c.transport.counts.dropped;
      faults.duplicated = (faults.duplicated ?? 0) + c.transport.counts.duplicated;
      faults.reordered = (faults.reordered ?? 0) + c.transport.counts.reordered;
      faults.delayed = (faults.delayed ?? 0) + c.transport.counts.delayed;
      faults.cut_msg = (faults.cut_msg ?? 0) + c.transport.counts.cut;
      faults.cut_tcp = (faults.cut_tcp ?? 0) + c.proxy.counts.cut;
      faults.stall = (faults.stall ?? 0) + c.proxy.counts.stall;
      faults.slow = (faults.slow ?? 0) + c.proxy.counts.slow;
      faults.half_open = (faults.half_open ?? 0) + c.proxy.counts.halfOpen;
      faults.cas_refused = (faults.cas_refused ?? 0) + c.store.counts.casRefused;
      faults.cas_applied_lost = (faults.cas_applied_lost ?? 0) + c.store.counts.casAppliedLost;
      faults.cas_lost = (faults.cas_lost ?? 0) + c.store.counts.casLost;
      faults.read_failed = (faults.read_failed ?? 0) + c.store.counts.readFailed;
    }
    return {
      plan,
      faults,
      commits,
      observations: report.observations,
      catchUpMs,
      divergences: report.divergences,
      processErrors: [...errors.errors],
    };
  } finally {
    stopFollow.abort();
    for (const c of clients) {
      c.handle.close();
      await c.persist.close();
      await c.pubsub.close();
      await c.proxy.close();
    }
    for (const b of brokers) b.destroy();
    await consensus.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    errors.stop();
  }
}
