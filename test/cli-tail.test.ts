/**
 * `persist-pubsub tail` as a real process: against a real broker (gRPC) it prints each diff a
 * writer commits (shard, seqno, bytes, broker-stamped latency, and with --decode the persist
 * model's diff as JSON), prints the broker's gap notice, and exits 0 on Ctrl-C (SIGINT) or at
 * --limit; over NATS directly it prints what a NATS writer pushes.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../src/broker/index.js';
import {
  createNatsTransport,
  createPersistClient,
  createPubSubClient,
  type PersistClient,
} from '../src/client/index.js';
import { createMemoryConsensus } from '../src/consensus/index.js';
import type { PersistState } from '../src/shard-state/index.js';
import { type CliRun, ensureBuilt, spawnCli } from './support/run-cli.js';
import { requireService, SERVICE_URLS } from './support/services.js';
import { until } from './support/wait.js';

const natsOk = await requireService('nats');
let broker: Broker;
const runs: CliRun[] = [];
const cleanup: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  ensureBuilt();
  broker = createBroker({ listen: { host: '127.0.0.1', port: 0 }, registry: new Registry() });
  await broker.start();
}, 120_000);
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
  for (const r of runs.splice(0)) if (r.child.exitCode === null) r.child.kill('SIGKILL');
});
afterAll(() => broker?.destroy());

async function writer(pubsub: string): Promise<PersistClient> {
  const c = await createPersistClient({ consensus: createMemoryConsensus(), pubsub });
  cleanup.push(() => c.close());
  await until(() => c.pubsub.status.state === 'connected', 10_000, 'the writer to connect');
  return c;
}

const setUpper = (n: number) => (s: PersistState) => ({ ...s, upper: [BigInt(n)] });

describe('persist-pubsub tail (real process)', () => {
  it('prints each diff decoded, a gap notice, and exits 0 on Ctrl-C', async () => {
    const a = `s${randomUUID()}`;
    const b = `s${randomUUID()}`;
    const url = `grpc://127.0.0.1:${broker.address.port}`;
    const run = spawnCli(['tail', '--pubsub', url, '--json', '--decode', a, b]);
    runs.push(run);
    const subscribed = (id: string) =>
      (broker.listShards().items.find((s) => s.shardId === id)?.subscribers ?? 0) >= 1;
    await until(() => subscribed(a) && subscribed(b), 10_000, 'tail to subscribe');
    expect(run.stderr()).toMatch(/connected to grpc:/);

    const w = await writer(url);
    const ha = await w.openShard<PersistState>(a);
    const hb = await w.openShard<PersistState>(b);
    cleanup.push(
      () => ha.close(),
      () => hb.close(),
    );
    await ha.update(setUpper(1));
    await hb.update(setUpper(7));
    await ha.update(setUpper(2));
    const lines = (await run.waitForLines(3)).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => [l.shard_id, l.seqno])).toEqual([
      [a, '1'],
      [b, '1'],
      [a, '2'],
    ]);
    for (const l of lines) {
      expect(l.event).toBe('diff');
      expect(l.bytes).toBeGreaterThan(0);
      expect(typeof l.latency_ms).toBe('number');
      expect(l.latency_ms).toBeGreaterThanOrEqual(0);
    }
    // The persist model's field diff: upper updated from [1] to [2].
    expect(lines[2]?.diff).toMatchObject({
      upper: [{ key: '', op: 'update', old: ['1'], value: ['2'] }],
    });

    broker.setFlags({ forwardPushes: false });
    await ha.update(setUpper(3));
    const [, , , gap] = await run.waitForLines(4);
    expect(JSON.parse(gap as string)).toMatchObject({
      event: 'gap',
      shard_id: a,
      reason: 'not_forwarding',
    });
    broker.setFlags({ forwardPushes: true });

    run.child.kill('SIGINT');
    const exit = await run.exit;
    expect(exit.code).toBe(0);
    // Only the writer's own subscription is left.
    await until(
      () => broker.listShards().items.find((s) => s.shardId === a)?.subscribers === 1,
      10_000,
      'tail to unsubscribe',
    );
  });

  it('prints a table by default and exits 0 after --limit diffs', async () => {
    const a = `s${randomUUID()}`;
    const url = `grpc://127.0.0.1:${broker.address.port}`;
    const run = spawnCli(['tail', '--pubsub', url, '--limit', '2', a]);
    runs.push(run);
    await until(
      () => broker.listShards().items.some((s) => s.shardId === a),
      10_000,
      'tail to subscribe',
    );
    const w = await writer(url);
    const h = await w.openShard<PersistState>(a);
    cleanup.push(() => h.close());
    for (let i = 1; i <= 3; i++) await h.update(setUpper(i));
    const exit = await run.exit;
    expect(exit.code).toBe(0);
    const lines = exit.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TIME\s+SHARD\s+SEQNO\s+BYTES\s+LATENCY\s+DIFF$/);
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(
      new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\s+${a}\\s+1\\s+\\d+\\s+[\\d.]+ms$`),
    );
  });

  it('with a scoped token: diffs of the shards in scope, a refused line for the others', async () => {
    const scoped = createBroker({
      listen: { host: '127.0.0.1', port: 0 },
      tokens: [
        { name: 'writer', token: 'tok-w', publish: ['*'], subscribe: ['*'] },
        { name: 'oncall', token: 'tok-oncall', subscribe: ['sok-*'] },
      ],
    });
    await scoped.start();
    cleanup.push(() => scoped.destroy());
    const url = `grpc://127.0.0.1:${scoped.address.port}`;
    const ok = `sok-${randomUUID()}`;
    const no = `sno-${randomUUID()}`;
    const dir = mkdtempSync(join(tmpdir(), 'pp-tail-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'tok-oncall\n');
    const run = spawnCli([
      'tail',
      '--pubsub',
      url,
      '--json',
      '--auth-token-file',
      tokenFile,
      ok,
      no,
    ]);
    runs.push(run);
    const [refusal] = await run.waitForLines(1);
    expect(JSON.parse(refusal as string)).toMatchObject({
      event: 'refused',
      shard_id: no,
      reason: 'permission_denied',
    });
    const w = await createPersistClient({
      consensus: createMemoryConsensus(),
      pubsub: { url, authToken: 'tok-w' },
    });
    cleanup.push(() => w.close());
    const h = await w.openShard<PersistState>(ok);
    cleanup.push(() => h.close());
    await until(
      () => scoped.listShards().items.find((s) => s.shardId === ok)?.subscribers === 2,
      10_000,
      'both subscribed',
    );
    await h.update(setUpper(1));
    const [, diff] = await run.waitForLines(2);
    expect(JSON.parse(diff as string)).toMatchObject({ event: 'diff', shard_id: ok, seqno: '1' });
    run.child.kill('SIGINT');
    expect((await run.exit).code).toBe(0);
    // Without a token: refused at admission, said on stderr, retried with backoff.
    const anon = spawnCli(['tail', '--pubsub', url, ok]);
    runs.push(anon);
    await until(
      () => /not connected \(.*missing or wrong bearer token/.test(anon.stderr()),
      10_000,
      'refused at admission',
    );
  });

  it('a bad --pubsub URL, no shard or a bad shard id is a usage error (exit 2)', async () => {
    const bad = spawnCli(['tail', '--pubsub', 'http://x:1', 's1']);
    expect((await bad.exit).code).toBe(2);
    expect(bad.stderr()).toMatch(/--pubsub/);
    const none = spawnCli(['tail', '--pubsub', 'grpc://127.0.0.1:1']);
    expect((await none.exit).code).toBe(2);
    // The one shard id rule (src/protocol/shard-id.ts), before anything connects.
    const badId = spawnCli(['tail', '--pubsub', 'grpc://127.0.0.1:1', 's1', 'not a shard']);
    expect((await badId.exit).code).toBe(2);
    expect(badId.stderr()).toMatch(/printable ASCII/);
  });

  it.skipIf(!natsOk)('over NATS: prints what a NATS writer pushes', async () => {
    const a = `s${randomUUID()}`;
    const subjectPrefix = `pp-tail-${randomUUID().slice(0, 8)}`;
    const run = spawnCli(['tail', '--pubsub', SERVICE_URLS.nats, '--json', '--decode', a], {
      env: { PERSIST_PUBSUB_BRIDGE_SUBJECT_PREFIX: subjectPrefix },
    });
    runs.push(run);
    await until(() => /connected to nats:/.test(run.stderr()), 10_000, 'tail to connect to NATS');
    // A NATS writer with the same subject prefix.
    const pub = createPubSubClient(
      createNatsTransport({ url: SERVICE_URLS.nats, subjectPrefix, callerId: 'tail-test' }),
    );
    cleanup.push(() => pub.close());
    const nw = await createPersistClient({ consensus: createMemoryConsensus(), pubsub: pub });
    cleanup.push(() => nw.close());
    await until(() => pub.status.state === 'connected', 10_000, 'the NATS writer to connect');
    const h = await nw.openShard<PersistState>(a);
    cleanup.push(() => h.close());
    // Core NATS has no subscription handshake to wait for: push until the tail sees one.
    for (let i = 1; run.lines.length === 0 && i < 200; i++) {
      await h.update(setUpper(i));
      await new Promise((r) => setTimeout(r, 20));
    }
    const [first] = await run.waitForLines(1);
    expect(JSON.parse(first as string)).toMatchObject({ event: 'diff', shard_id: a });
    run.child.kill('SIGINT');
    expect((await run.exit).code).toBe(0);
  });
});
