/**
 * `persist-pubsub shards` and `connections` as real processes against a real broker's admin
 * endpoint: every page followed (1234 shards in pages of 100), each item once, a table or JSON
 * lines, `--limit`, and the exit codes of an unreachable endpoint (1) and a bad flag (2).
 */
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AdminServer,
  type Broker,
  createAdminServer,
  createBroker,
  type InProcessConnection,
} from '../src/broker/index.js';
import { ensureBuilt, runCli } from './support/run-cli.js';

let broker: Broker;
let admin: AdminServer;
let base: string;
const conns: InProcessConnection[] = [];
const shardIds = Array.from(
  { length: 1234 },
  (_, i) => `s${String(i).padStart(8, '0')}-1111-2222-3333-444444444444`,
);

beforeAll(async () => {
  ensureBuilt();
  broker = createBroker({ listen: { host: '127.0.0.1', port: 0 }, registry: new Registry() });
  await broker.start();
  admin = createAdminServer({ broker, listen: { host: '127.0.0.1', port: 0 } });
  await admin.start();
  base = `http://127.0.0.1:${admin.address.port}`;
  for (let c = 0; c < 3; c++) {
    conns.push(broker.connectInProcess({ callerId: `caller-${c}`, onMessage: () => {} }));
  }
  shardIds.forEach((id, i) => {
    conns[i % 3]?.subscribe(id);
    if (i % 10 === 0) conns[(i + 1) % 3]?.subscribe(id);
  });
}, 120_000);

afterAll(() => {
  for (const c of conns) c.close();
  admin?.destroy();
  broker?.destroy();
});

describe('persist-pubsub shards / connections (real processes)', () => {
  it('shards --json follows every page: each shard once, with its subscriber count', async () => {
    const r = await runCli(['shards', '--admin', base, '--page-size', '100', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { shard_id: string; subscribers: number });
    expect(rows).toHaveLength(shardIds.length);
    expect(new Set(rows.map((s) => s.shard_id))).toEqual(new Set(shardIds));
    for (const s of rows) {
      expect(s.subscribers).toBe(shardIds.indexOf(s.shard_id) % 10 === 0 ? 2 : 1);
    }
  });

  it('shards prints a table with a header by default; --limit stops early', async () => {
    const r = await runCli(['shards', '--admin', base, '--page-size', '3', '--limit', '7']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(8);
    expect(lines[0]).toMatch(/^SHARD\s+SUBSCRIBERS\s+LAST SEQNO$/);
    expect(lines[1]).toMatch(/^s00000000-1111-2222-3333-444444444444\s+2\s+-$/);
    expect(lines[7]).toMatch(/^s00000006-1111-2222-3333-444444444444\s+1\s+-$/);
  });

  it('connections lists each connection with caller, subscriptions and queue', async () => {
    const r = await runCli(['connections', '--page-size', '2', '--json'], {
      env: { PERSIST_PUBSUB_ADMIN: base },
    });
    expect(r.code).toBe(0);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { caller_id: string; subscriptions: number; dropped: number });
    expect(rows.map((c) => c.caller_id).sort()).toEqual(['caller-0', 'caller-1', 'caller-2']);
    expect(rows.reduce((n, c) => n + c.subscriptions, 0)).toBe(1234 + 124);
    const table = await runCli(['connections', '--admin', base]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(
      /^CONNECTION\s+CALLER\s+REMOTE\s+AGE\s+SUBS\s+QUEUED\s+QUEUED BYTES\s+DROPPED$/,
    );
    expect(lines).toHaveLength(4);
  });

  it('exits 1 naming the endpoint when it cannot be reached, 2 on a bad flag', async () => {
    const down = await runCli(['shards', '--admin', 'http://127.0.0.1:1']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(
      /persist-pubsub shards: cannot reach the admin endpoint http:\/\/127\.0\.0\.1:1/,
    );
    const bad = await runCli(['shards', '--limit', 'ten']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--limit/);
    const url = await runCli(['connections', '--admin', 'grpc://127.0.0.1:6880']);
    expect(url.code).toBe(2);
    expect(url.stderr).toMatch(/--admin must be http/);
  });
});
