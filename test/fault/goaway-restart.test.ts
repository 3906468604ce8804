/**
 * A graceful broker restart as a deploy does it, with real broker processes (the built CLI): a
 * writer commits steadily to a SQLite Consensus and a reader follows the shard, both through
 * the SDK over gRPC. The broker gets SIGTERM; as soon as it stops listening a new broker starts
 * on the same port, while the old one drains (serving its open streams). The clients move on
 * GOAWAY (make-before-break), so the reader never falls back to polling and asks for no
 * catch-up fetch: every commit reaches it by push. The old broker exits once both have left,
 * well before its drain deadline. Prints the figures (SIGTERM → the reader on the new broker,
 * the old broker's drain, polls and fetches).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPersistClient, type PersistClient } from '../../src/client/index.js';
import { sumMetric, withLabels } from '../../src/util/index.js';
import { freePort } from '../nats-support.js';
import { counterModel } from '../support/counter-model.js';
import { type CliRun, ensureBuilt, spawnBroker } from '../support/run-cli.js';
import { tcpReachable } from '../support/services.js';
import { until } from '../support/wait.js';

ensureBuilt();
const dir = mkdtempSync(join(tmpdir(), 'pp-goaway-'));
const runs: CliRun[] = [];
const clients: PersistClient[] = [];
afterAll(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const r of runs.splice(0)) if (r.child.exitCode === null) r.child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const S = 's00000000-0000-0000-0000-00000000600a';
/** Far above what the restart takes, so that exiting before it says the drain ended early. */
const DRAIN_DEADLINE_MS = 30_000;

async function broker(port: number): Promise<CliRun> {
  const { run } = await spawnBroker([
    '--listen',
    `127.0.0.1:${port}`,
    '--drain-deadline-ms',
    String(DRAIN_DEADLINE_MS),
  ]);
  runs.push(run);
  return run;
}

/** The sum of a metric's values (a histogram's observations) whose labels include `labels`. */
const metric = (client: PersistClient, name: string, labels: Record<string, string> = {}) =>
  sumMetric(client.registry, name, withLabels(labels));

/** What says whether the reader kept its fast path. */
async function readerFigures(reader: PersistClient) {
  return {
    polls: await metric(reader, 'persist_pubsub_state_consensus_reads_total', { reason: 'poll' }),
    consensusReads: await metric(reader, 'persist_pubsub_state_consensus_reads_total'),
    catchUpFetches: await metric(reader, 'persist_pubsub_client_catch_up_fetches_total'),
    byPush: await metric(reader, 'persist_pubsub_e2e_latency_seconds', { path: 'pubsub' }),
    byPoll: await metric(reader, 'persist_pubsub_e2e_latency_seconds', { path: 'poll' }),
  };
}

describe('graceful broker restart (SIGTERM, new broker on the same port)', () => {
  it('costs the reader no fallback poll and no catch-up fetch: every commit arrives by push', async () => {
    const port = await freePort();
    const old = await broker(port);
    const url = `grpc://127.0.0.1:${port}`;
    const consensus = `sqlite:${join(dir, 'persist.db')}`;
    // Defaults: a first poll 1.2 s after the last progress, 5 s reconnect backoff, GOAWAY
    // jitter 250 ms and overlap 2 s.
    const writer = await createPersistClient({ consensus, pubsub: url, callerId: 'writer' });
    clients.push(writer);
    const reader = await createPersistClient({ consensus, pubsub: url, callerId: 'reader' });
    clients.push(reader);
    const wh = await writer.openShard(S, counterModel);
    const rh = await reader.openShard(S, counterModel);
    await until(
      () =>
        writer.pubsub.status.state === 'connected' && reader.pubsub.status.state === 'connected',
    );

    let committed = 0n;
    let writing = true;
    const writes = (async () => {
      while (writing) {
        committed = (await wh.update((s) => s + 1)).seqno;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    // A reader that always waits for the next version, as a listen loop does: it polls
    // Consensus whenever pubsub leaves it waiting past its first poll (1.2 s).
    let following = true;
    const follower = (async () => {
      while (following) {
        await rh
          .waitForSeqno(rh.seqno + 1n, { signal: AbortSignal.timeout(30_000) })
          .catch(() => {});
      }
    })();
    // Steady state: the reader follows by push; the figures count from here.
    await rh.waitForSeqno(committed + 10n, { signal: AbortSignal.timeout(10_000) });
    const before = await readerFigures(reader);
    const fromSeqno = rh.seqno;

    const t0 = performance.now();
    old.child.kill('SIGTERM');
    for (const deadline = Date.now() + 10_000; await tcpReachable('127.0.0.1', port, 200); ) {
      if (Date.now() > deadline) throw new Error('the old broker still listens');
      await new Promise((r) => setTimeout(r, 10));
    }
    const next = await broker(port);
    const nextListeningMs = performance.now() - t0;
    await until(
      () =>
        reader.pubsub.status.state === 'connected' &&
        reader.pubsub.status.connections === 2 &&
        writer.pubsub.status.state === 'connected' &&
        writer.pubsub.status.connections === 2,
      15_000,
    );
    const movedMs = performance.now() - t0;
    const oldExit = await old.exit;
    const oldExitMs = performance.now() - t0;
    // A while on the new broker alone, then stop and let the reader reach the last commit.
    const last = committed;
    await rh.waitForSeqno(last + 25n, { signal: AbortSignal.timeout(15_000) });
    writing = false;
    await writes;
    await rh.waitForSeqno(committed, { signal: AbortSignal.timeout(10_000) });
    expect(rh.seqno).toBe(committed);
    following = false;
    await wh.update((s) => s + 1);
    await follower;
    const after = await readerFigures(reader);
    const delta = Object.fromEntries(
      Object.entries(after).map(([k, v]) => [k, v - before[k as keyof typeof before]]),
    );
    const handovers = await metric(reader, 'persist_pubsub_client_goaway_handovers_total', {
      outcome: 'overlapped',
    });
    const duplicates = await metric(reader, 'persist_pubsub_client_goaway_duplicates_total');
    const commits = Number(committed - fromSeqno);
    console.log(
      JSON.stringify({
        goawayRestart: {
          nextListeningMs,
          movedMs,
          oldExitMs,
          commits,
          delta,
          handovers,
          duplicates,
        },
      }),
    );

    expect(oldExit.code).toBe(0);
    // Drained as soon as the clients left it, not at the deadline.
    expect(oldExitMs).toBeLessThan(DRAIN_DEADLINE_MS);
    expect(reader.pubsub.status).toMatchObject({ state: 'connected', reason: 'goaway' });
    expect(writer.pubsub.status).toMatchObject({ state: 'connected', reason: 'goaway' });
    expect(handovers).toBe(1);
    expect(delta.polls).toBe(0);
    expect(delta.catchUpFetches).toBe(0);
    expect(delta.consensusReads).toBe(0);
    // No Consensus read at all: every version the reader applied in the window came by push.
    expect(delta.byPoll).toBe(0);
    expect(delta.byPush).toBeGreaterThanOrEqual(commits);
    wh.close();
    rh.close();
    for (const c of clients.splice(0)) await c.close();
    next.child.kill('SIGTERM');
    expect((await next.exit).code).toBe(0);
  }, 60_000);
});
