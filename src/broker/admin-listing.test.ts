/**
 * The admin listings over a real broker (in-process connections, no gRPC client): page tokens
 * the broker mints survive the trip through the query string, every shard and connection is
 * listed once, subscriber counts are right, and a forged token is a 400.
 */
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { type AdminServer, createAdminServer } from './admin-server.js';
import { createBroker } from './broker.js';
import type { Broker, InProcessConnection } from './types.js';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function setup(): Promise<{ broker: Broker; admin: AdminServer; base: string }> {
  const broker = createBroker({ listen: { host: '127.0.0.1', port: 0 }, registry: new Registry() });
  await broker.start();
  cleanup.push(() => broker.destroy());
  const admin = createAdminServer({ broker, listen: { host: '127.0.0.1', port: 0 } });
  await admin.start();
  cleanup.push(() => admin.destroy());
  return { broker, admin, base: `http://127.0.0.1:${admin.address.port}` };
}

async function listAll<T>(base: string, path: string, key: string, pageSize: number) {
  const items: T[] = [];
  let token: string | undefined;
  let pages = 0;
  do {
    const q = new URLSearchParams({ page_size: String(pageSize) });
    if (token !== undefined) q.set('page_token', token);
    const res = await fetch(`${base}${path}?${q}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    items.push(...(body[key] as T[]));
    token = body.next_page_token as string | undefined;
    pages++;
  } while (token !== undefined);
  return { items, pages };
}

describe('admin listings over a real broker', () => {
  it('lists every shard and connection exactly once across pages', async () => {
    const { broker, base } = await setup();
    const conns: InProcessConnection[] = [];
    for (let c = 0; c < 30; c++) {
      conns.push(broker.connectInProcess({ callerId: `caller-${c % 4}`, onMessage: () => {} }));
    }
    cleanup.push(() => {
      for (const c of conns) c.close();
    });
    const shardIds = Array.from(
      { length: 1234 },
      (_, i) => `s${String(i).padStart(8, '0')}-1111-2222-3333-444444444444`,
    );
    shardIds.forEach((id, i) => {
      conns[i % conns.length]?.subscribe(id);
      if (i % 10 === 0) conns[(i + 1) % conns.length]?.subscribe(id);
    });

    const shards = await listAll<{ shard_id: string; subscribers: number }>(
      base,
      '/v1/shards',
      'shards',
      97,
    );
    expect(shards.pages).toBe(Math.ceil(1234 / 97));
    expect(shards.items.map((s) => s.shard_id).sort()).toEqual([...shardIds].sort());
    const byId = new Map(shards.items.map((s) => [s.shard_id, s.subscribers]));
    expect(byId.get(shardIds[0]!)).toBe(2);
    expect(byId.get(shardIds[1]!)).toBe(1);

    const listed = await listAll<{ conn_id: string; caller_id: string; subscriptions: number }>(
      base,
      '/v1/connections',
      'connections',
      7,
    );
    expect(listed.items.map((c) => c.conn_id).sort()).toEqual(conns.map((c) => c.connId).sort());
    const total = listed.items.reduce((n, c) => n + c.subscriptions, 0);
    expect(total).toBe(1234 + Math.ceil(1234 / 10));
    expect(new Set(listed.items.map((c) => c.caller_id))).toEqual(
      new Set(['caller-0', 'caller-1', 'caller-2', 'caller-3']),
    );
  });

  it('answers 400 for a forged token and 503 on /readyz once the broker drains', async () => {
    const { broker, base } = await setup();
    const forged = await fetch(
      `${base}/v1/shards?page_token=${Buffer.from('x:1').toString('base64url')}`,
    );
    expect(forged.status).toBe(400);
    expect(((await forged.json()) as { error: { code: string } }).error.code).toBe(
      'invalid_argument',
    );
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const closing = broker.close({ deadlineMs: 100 });
    expect((await fetch(`${base}/readyz`)).status).toBe(503);
    await closing;
    expect((await fetch(`${base}/readyz`)).status).toBe(503);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });
});
