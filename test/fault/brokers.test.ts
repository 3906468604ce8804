/**
 * Several brokers under `kill -9`, with real broker processes (the built CLI) and an SDK writer
 * and reader (bench/brokers-scenario.ts: steady commits over four shards, a reader that always
 * waits for the next version, so it polls whenever pubsub leaves it waiting 1.2 s):
 * - replicated, two brokers: kill one, restart it, then the other: no fallback poll, no
 *   catch-up fetch, no Consensus read by the reader, every commit observed by push, the second
 *   copies dropped as duplicates;
 * - sharded, two brokers: kill one (not restarted): only its shards are read from Consensus
 *   (one catch-up each), the other broker's shards keep their fast path; and killed and
 *   restarted: the same catch-ups, at the kill, and none when the shards move back.
 * Prints the figures; latency is measured, not asserted (`npm run bench -- brokers`).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { type BrokerProcess, runBrokerKills } from '../../bench/brokers-scenario.js';
import { freePort } from '../nats-support.js';
import { type CliRun, ensureBuilt, spawnBroker } from '../support/run-cli.js';

ensureBuilt();
const runs: CliRun[] = [];
afterAll(() => {
  for (const r of runs.splice(0)) if (r.child.exitCode === null) r.child.kill('SIGKILL');
});

async function startBroker(port: number): Promise<BrokerProcess> {
  const { run } = await spawnBroker(['--listen', `127.0.0.1:${port}`]);
  runs.push(run);
  const pid = run.child.pid as number;
  const end = async (signal: NodeJS.Signals) => {
    if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill(signal);
    await run.exit;
  };
  return { pid, kill9: () => end('SIGKILL'), stop: () => end('SIGTERM') };
}

/**
 * Sharded over two brokers, broker 0 killed (and restarted unless `restart` is false): only the
 * shards it carried (`moved`, none of them without a shard on it) touch Consensus, by one
 * catch-up each and no poll. Only the moved shards' reads: their catch-up, and (when the writer
 * noticed the kill after the reader's catch-up, so a commit went to the dead broker) an exact
 * gap fetch of that commit when the next one arrives ahead of it. On a restart the shards move
 * back make-before-break: no poll while the two clients notice it at different times, no
 * second read.
 */
async function shardedKill(label: string, restart: boolean) {
  const ports = [await freePort(), await freePort()];
  const r = await runBrokerKills({
    brokers: 2,
    mode: 'sharded',
    ports,
    startBroker,
    shards: 8,
    kills: [0],
    ...(restart ? {} : { restart: false }),
  });
  console.log(JSON.stringify({ [label]: r }));
  const moved = r.shardsOn?.[0] ?? [];
  expect(moved.length).toBeGreaterThan(0);
  expect(r.polls).toBe(0);
  expect(r.catchUpFetches).toBe(moved.length);
  expect(Object.keys(r.readsByShard).sort()).toEqual([...moved].sort());
  return r;
}

describe('several brokers, kill -9', () => {
  it('replicated: kill one, restart it, then the other: no poll, no catch-up, every commit by push', async () => {
    const ports = [await freePort(), await freePort()];
    const r = await runBrokerKills({ brokers: 2, mode: 'replicated', ports, startBroker });
    console.log(JSON.stringify({ replicatedKills: r }));
    expect(r.commits).toBeGreaterThan(50);
    expect(r.polls).toBe(0);
    expect(r.catchUpFetches).toBe(0);
    expect(r.readsByShard).toEqual({});
    // Every version the reader applied in the window came by push (commits in flight when the
    // window opened count too).
    expect(r.byConsensus).toBe(0);
    expect(r.byPush).toBeGreaterThanOrEqual(r.commits);
    // Both brokers were up for part of the window: the second copies were dropped.
    expect(r.duplicates).toBeGreaterThan(0);
  }, 90_000);

  it('sharded: kill one of two: only its shards are read from Consensus, one catch-up each', async () => {
    const r = await shardedKill('shardedKill', false);
    // The other broker's shards keep their fast path.
    const stayed = r.shardsOn?.[1] ?? [];
    expect(stayed.length).toBeGreaterThan(0);
    expect(r.duplicates).toBe(0);
  }, 90_000);

  it('sharded: kill one of two and restart it: one catch-up per moved shard, at the kill; none on return', async () => {
    await shardedKill('shardedKillRestart', true);
  }, 90_000);
});
