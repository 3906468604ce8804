/**
 * Runs the commands of the README's "Operating it" section as written (real processes), against
 * a broker with its admin endpoint and a SQLite store holding the README's shard: only the
 * ports (free ones instead of 6879/6880) and the SQLite path change, and `tail` gets `--limit 1`
 * so that it ends after the commit the test makes while it runs.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AdminServer,
  type Broker,
  createAdminServer,
  createBroker,
} from '../src/broker/index.js';
import { createPersistClient, type PersistClient } from '../src/client/index.js';
import type { PersistState, ShardHandle } from '../src/shard-state/index.js';
import { ensureBuilt, ROOT, runCli, spawnCli } from './support/run-cli.js';

const SHARD = 's00000000-0000-0000-0000-000000000000';
const work = mkdtempSync(join(tmpdir(), 'pp-readme-ops-'));
const section =
  readFileSync(join(ROOT, 'README.md'), 'utf8').split('## Operating it')[1]?.split('\n## ')[0] ??
  '';
const commands = (section.split('```sh\n')[1]?.split('```')[0] ?? '')
  .split('\n')
  .filter((l) => l.startsWith('persist-pubsub '));

let broker: Broker;
let admin: AdminServer;
let client: PersistClient;
let handle: ShardHandle<PersistState>;
let rewrite: (line: string) => string[];

beforeAll(async () => {
  ensureBuilt();
  broker = createBroker({ listen: { host: '127.0.0.1', port: 0 }, registry: new Registry() });
  await broker.start();
  admin = createAdminServer({ broker, listen: { host: '127.0.0.1', port: 0 } });
  await admin.start();
  const grpc = `grpc://127.0.0.1:${broker.address.port}`;
  const db = `sqlite:${join(work, 'persist.db')}`;
  client = await createPersistClient({ consensus: db, pubsub: grpc, callerId: 'readme-writer' });
  handle = await client.openShard<PersistState>(SHARD);
  for (let i = 1; i <= 3; i++) await handle.update((s) => ({ ...s, upper: [BigInt(i)] }));
  rewrite = (line) =>
    line
      .replace('http://127.0.0.1:6880', `http://127.0.0.1:${admin.address.port}`)
      .replace('grpc://127.0.0.1:6879', grpc)
      .replace('sqlite:./persist.db', db)
      .split(/\s+/)
      .slice(1);
}, 120_000);

afterAll(async () => {
  handle?.close();
  await client?.close();
  admin?.destroy();
  broker?.destroy();
  rmSync(work, { recursive: true, force: true });
});

const find = (command: string) => {
  const line = commands.find((l) => l.startsWith(`persist-pubsub ${command}`));
  expect(line, command).toBeDefined();
  return rewrite(line as string);
};

describe("README 'Operating it'", () => {
  it('names the six commands', () => {
    expect(commands.map((l) => l.split(' ')[1])).toEqual([
      'shards',
      'connections',
      'tail',
      'keys',
      'inspect',
      'inspect',
    ]);
  });

  it('shards and connections list the broker', async () => {
    const shards = await runCli(find('shards'));
    expect(shards.code).toBe(0);
    expect(shards.stdout).toMatch(new RegExp(`^${SHARD}\\s+1\\s+`, 'm'));
    const conns = await runCli(find('connections'));
    expect(conns.code).toBe(0);
    expect(JSON.parse(conns.stdout.trim().split('\n')[0] as string)).toMatchObject({
      caller_id: 'readme-writer',
      subscriptions: 1,
    });
  });

  it('keys and inspect read the store', async () => {
    const keys = await runCli(find('keys'));
    expect(keys.code).toBe(0);
    expect(keys.stdout.split('\n')).toContain(SHARD);
    const inspects = commands.filter((l) => l.startsWith('persist-pubsub inspect'));
    const head = await runCli(rewrite(inspects[0] as string));
    expect(head.code).toBe(0);
    expect(JSON.parse(head.stdout)).toMatchObject({ seqno: '3', state: { upper: ['3'] } });
    // `--at 2`: this shard's rollup phase puts a rollup at version 2 (isRollupSeqno), so version
    // 1 is truncated and 2 is the oldest retained.
    const at = await runCli(rewrite(inspects[1] as string));
    expect(at.code).toBe(0);
    expect(JSON.parse(at.stdout)).toMatchObject({ seqno: '2', state: { upper: ['2'] } });
  });

  it('tail prints the next commit, decoded', async () => {
    const run = spawnCli([...find('tail'), '--limit', '1']);
    const subscribers = () =>
      broker.listShards().items.find((s) => s.shardId === SHARD)?.subscribers;
    for (const end = Date.now() + 10_000; subscribers() !== 2; ) {
      if (Date.now() > end) throw new Error(`tail never subscribed: ${run.stderr()}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    await handle.update((s) => ({ ...s, upper: [4n] }));
    const exit = await run.exit;
    expect(exit.code).toBe(0);
    const [header, row] = exit.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^TIME\s+SHARD\s+SEQNO\s+BYTES\s+LATENCY\s+DIFF$/);
    expect(row).toContain(SHARD);
    expect(row).toMatch(/\s4\s/);
    expect(row).toContain('"op":"update"');
  });
});
