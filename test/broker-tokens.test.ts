/**
 * Scoped bearer tokens (issue 16 part 3), over real connections:
 * - our SDK (extensions on): an allowed shard keeps the fast path; a subscribe outside the
 *   token's scope gets that shard's handle a `refused` status (`permission_denied`, call
 *   `subscribe`), a refused push stops only that shard's pushes; the stream stays up;
 * - reference clients (grpc-js, connect-node, Python grpcio; no extensions): a refused push or
 *   subscribe is dropped and counted, nothing arrives, the stream is never ended;
 * - a reload that revokes a token ends its streams with UNAUTHENTICATED (SDK and reference);
 * - the CLI: a bad `--auth-tokens-file` on reload keeps the tokens in force (logged, counted),
 *   a good one revokes at once.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker, type TokenGrant } from '../src/broker/index.js';
import { createPersistClient, type PersistClient } from '../src/client/index.js';
import { createMemoryConsensus } from '../src/consensus/index.js';
import { counterModel } from './support/counter-model.js';
import { countingConsensus } from './support/counting-consensus.js';
import {
  type ClientKind,
  clientMissing,
  expectQuiet,
  openClient,
  type TestClient,
} from './support/grpc-clients.js';
import { ensureBuilt, spawnBroker } from './support/run-cli.js';
import { until } from './support/wait.js';

const ALLOWED = () => `sok-${randomUUID()}`;
const DENIED = () => `sno-${randomUUID()}`;

const writer: TokenGrant = {
  name: 'writer',
  token: 'tok-writer',
  publish: ['s*'],
  subscribe: ['*'],
};
const reader: TokenGrant = { name: 'reader', token: 'tok-reader', subscribe: ['sok-*'] };

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function startBroker(tokens: TokenGrant[] = [writer, reader]): Promise<Broker> {
  const broker = createBroker({ listen: { host: '127.0.0.1', port: 0 }, tokens });
  await broker.start();
  cleanup.push(() => broker.destroy());
  return broker;
}

async function metric(from: PersistClient | Broker, name: string, labels: string) {
  const text = await from.registry.metrics();
  const m = text.match(new RegExp(`${name}\\{${labels}\\} (\\d+)`));
  return m ? Number(m[1]) : 0;
}

const refused = (caller: string, call: string, reason = 'permission_denied') =>
  `caller_id="${caller}",call="${call}",reason="${reason}"`;

async function persistClient(broker: Broker, grant: TokenGrant, callerId: string) {
  const store = countingConsensus(shared);
  const c = await createPersistClient({
    consensus: store.consensus,
    pubsub: { url: `grpc://127.0.0.1:${broker.address.port}`, authToken: grant.token },
    callerId,
    config: {
      persist_pubsub_reconnect_backoff_ms: 20,
      persist_pubsub_connect_max_backoff_ms: 50,
      // A slow poll: a reader that sees a commit sooner got it through pubsub.
      persist_next_listen_batch_retryer_fixed_sleep_ms: 5000,
    },
  });
  cleanup.push(() => c.close());
  return { client: c, counts: store.counts };
}
let shared = createMemoryConsensus();

describe('our SDK with a scoped token', () => {
  it('allowed shards keep the fast path; a refused subscribe or push marks that shard only', async () => {
    shared = createMemoryConsensus();
    const broker = await startBroker();
    const w = await persistClient(broker, writer, 'w');
    const r = await persistClient(broker, reader, 'spoofed-writer');
    const ok = ALLOWED();
    const no = DENIED();
    const wOk = await w.client.openShard(ok, counterModel);
    const rOk = await r.client.openShard(ok, counterModel);
    const wNo = await w.client.openShard(no, counterModel);
    const rNo = await r.client.openShard(no, counterModel);
    cleanup.push(
      () => wOk.close(),
      () => rOk.close(),
      () => wNo.close(),
      () => rNo.close(),
    );

    // The subscribe outside the scope: that handle shows it, the broker counts it.
    await until(() => rNo.pubsubStatus.state === 'refused', 5000, 'subscribe refusal');
    expect(rNo.pubsubStatus).toMatchObject({
      state: 'refused',
      reason: 'permission_denied',
      call: 'subscribe',
      error: { code: 'refused' },
    });
    expect(
      await metric(broker, 'persist_pubsub_server_refused_total', refused('reader', 'subscribe')),
    ).toBe(1);
    expect(
      await metric(
        r.client,
        'persist_pubsub_client_shards_refused_total',
        'transport="grpc",reason="permission_denied"',
      ),
    ).toBe(1);
    // The token names the caller, whatever the header says.
    expect(
      broker
        .listConnections()
        .items.map((c) => c.callerId)
        .sort(),
    ).toEqual(['reader', 'writer']);

    // The allowed shard: the writer's commits reach the reader with no read of Consensus.
    await until(
      () => (broker.listShards().items.find((s) => s.shardId === ok)?.subscribers ?? 0) === 2,
    );
    await new Promise((res) => setTimeout(res, 100)); // the connect-time catch-up reads settle
    let before = r.counts.reads;
    for (let i = 0; i < 3; i++) {
      const res = await wOk.update((s) => s + 1);
      await rOk.waitForSeqno(res.seqno, { signal: AbortSignal.timeout(2000) });
    }
    expect(r.counts.reads - before).toBe(0);
    // The refused shard still moves, by Consensus.
    const moved = await wNo.update((s) => s + 1);
    expect((await rNo.refresh()).seqno).toBe(moved.seqno);

    // The reader may not publish: its push of the allowed shard is refused, that shard's pushes
    // stop, and its subscription stays on the fast path.
    const own = await rOk.update((s) => s + 1);
    await until(() => rOk.pubsubStatus.state === 'refused', 5000, 'push refusal');
    expect(rOk.pubsubStatus).toMatchObject({ reason: 'permission_denied', call: 'push' });
    expect(
      await metric(broker, 'persist_pubsub_server_refused_total', refused('reader', 'push')),
    ).toBe(1);
    await rOk.update((s) => s + 1);
    expect(
      await metric(r.client, 'persist_pubsub_client_pushes_dropped_total', 'reason="refused"'),
    ).toBe(1);
    expect((await wOk.refresh()).seqno).toBeGreaterThan(own.seqno);
    before = r.counts.reads;
    const next = await wOk.update((s) => s + 1);
    await rOk.waitForSeqno(next.seqno, { signal: AbortSignal.timeout(2000) });
    expect(r.counts.reads - before).toBe(0);
    // One stream all along.
    expect(
      await metric(
        r.client,
        'persist_pubsub_client_connections_established_total',
        'transport="grpc"',
      ),
    ).toBe(1);
  });

  it('a revoked token: its stream ends with UNAUTHENTICATED; the others carry on', async () => {
    shared = createMemoryConsensus();
    const broker = await startBroker();
    const w = await persistClient(broker, writer, 'w');
    const r = await persistClient(broker, reader, 'r');
    const ok = ALLOWED();
    const rOk = await r.client.openShard(ok, counterModel);
    const wOk = await w.client.openShard(ok, counterModel);
    cleanup.push(
      () => rOk.close(),
      () => wOk.close(),
    );
    await until(() => r.client.pubsub.status.state === 'connected');
    await until(() => w.client.pubsub.status.state === 'connected');
    broker.setTokens([writer]);
    await until(() => r.client.pubsub.status.state !== 'connected', 5000, 'reader disconnected');
    await until(() => broker.listConnections().items.length === 1);
    expect(broker.listConnections().items[0]?.callerId).toBe('writer');
    expect(
      await metric(
        broker,
        'persist_pubsub_server_connections_closed_total',
        'status="UNAUTHENTICATED"',
      ),
    ).toBe(1);
    expect(
      await metric(
        broker,
        'persist_pubsub_server_refused_total',
        refused('reader', 'stream', 'revoked'),
      ),
    ).toBe(1);
    // Its reconnects are refused at admission (backoff, never a stream): it reads by polling.
    await until(
      async () =>
        (await metric(
          broker,
          'persist_pubsub_server_rejections_total',
          'limit="unauthenticated"',
        )) >= 1,
      5000,
      'reconnect refused',
    );
    expect(r.client.pubsub.status.state).not.toBe('connected');
    const res = await wOk.update((s) => s + 1);
    expect((await rOk.refresh()).seqno).toBe(res.seqno);
  });
});

describe.each<ClientKind>(['grpc-js', 'connect', 'python'])('a reference client (%s)', (kind) => {
  it('a refused push or subscribe is dropped and counted, the stream stays; a revoke ends it', async ({
    skip,
  }) => {
    if (clientMissing(kind)) skip();
    const broker = await startBroker();
    const address = `127.0.0.1:${broker.address.port}`;
    const open = async (grant: TokenGrant): Promise<TestClient> => {
      const c = await openClient(kind, address, { token: grant.token });
      cleanup.push(() => c.close());
      return c;
    };
    const w = await openClient('grpc-js', address, { token: writer.token });
    cleanup.push(() => w.close());
    const r = await open(reader);
    const ok = ALLOWED();
    const no = DENIED();
    w.subscribe(ok);
    r.subscribe(no); // outside the reader's scope
    r.subscribe(ok);
    await until(
      () => (broker.listShards().items.find((s) => s.shardId === ok)?.subscribers ?? 0) === 2,
    );
    expect(broker.listShards().items.some((s) => s.shardId === no)).toBe(false);
    // The reader may not publish: dropped, counted, nothing reaches the writer, no notice back.
    r.push(ok, 1n, Uint8Array.of(1));
    await until(
      async () =>
        (await metric(broker, 'persist_pubsub_server_refused_total', refused('reader', 'push'))) ===
        1,
    );
    expect(
      await metric(broker, 'persist_pubsub_server_refused_total', refused('reader', 'subscribe')),
    ).toBe(1);
    // What it may do works on the same stream: the writer's push of the allowed shard arrives.
    w.push(no, 1n, Uint8Array.of(2));
    w.push(ok, 2n, Uint8Array.of(3));
    const [m] = await r.waitFor(1);
    expect(m?.message).toMatchObject({ case: 'pushDiff', value: { shardId: ok, seqno: 2n } });
    await expectQuiet(w, 50);
    expect(r.received).toHaveLength(1);
    expect(broker.listConnections().items).toHaveLength(2);

    // A reload without the reader's token ends its stream; the writer's carries on.
    broker.setTokens([writer]);
    expect(await r.ended).toMatchObject({ code: 'UNAUTHENTICATED' });
    r.close();
    const again = await open(reader);
    expect(await again.ended).toMatchObject({ code: 'UNAUTHENTICATED' });
    // The ended stream leaves once its peer takes the trailers.
    await until(() => broker.listConnections().items.length === 1, 6000, 'reader gone');
    expect(broker.listConnections().items.map((c) => c.callerId)).toEqual(['writer']);
  });
});

describe('persist-pubsub broker --auth-tokens-file', () => {
  let dir: string;
  beforeAll(() => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'pp-tokens-cli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a bad file on reload keeps the tokens in force (logged, counted); a good one revokes', async () => {
    const path = join(dir, 'tokens.json');
    writeFileSync(path, JSON.stringify({ tokens: [writer, reader] }));
    const { run, grpc, admin } = await spawnBroker(['--auth-tokens-file', path]);
    cleanup.push(() => run.child.kill('SIGKILL'));
    const scrape = async () => (await fetch(`http://${admin}/metrics`)).text();
    const r = await openClient('grpc-js', grpc, { token: reader.token });
    const w = await openClient('grpc-js', grpc, { token: writer.token });
    cleanup.push(
      () => r.close(),
      () => w.close(),
    );
    const ok = ALLOWED();
    r.subscribe(ok);
    await until(async () => /persist_pubsub_server_subscriptions 1/.test(await scrape()));

    writeFileSync(
      path,
      '{"tokens": [{"name": "reader", "token": "tok-reader", "publish": ["a*b"]}]}',
    );
    run.child.kill('SIGHUP');
    await until(
      () => run.lines.some((l) => l.includes('tokens file rejected')),
      5000,
      'rejection logged',
    );
    expect(run.lines.find((l) => l.includes('tokens file rejected'))).toContain(
      'tokens[0].publish[0]',
    );
    expect(await scrape()).toMatch(
      /persist_pubsub_server_auth_tokens_reloads_total\{result="rejected"\} [1-9]/,
    );
    // Still the old tokens: the reader's stream is up and gets the writer's push.
    w.push(ok, 1n, Uint8Array.of(1));
    const [m] = await r.waitFor(1);
    expect(m?.message.case).toBe('pushDiff');

    // A good file without the reader: its stream ends (picked up by the file poll, no signal).
    writeFileSync(path, JSON.stringify({ tokens: [writer] }));
    expect(await r.ended).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(await scrape()).toMatch(/persist_pubsub_server_auth_tokens 1\n/);
    w.close();
    r.close();
    run.child.kill('SIGTERM');
    expect((await run.exit).code).toBe(0);
  });
});
