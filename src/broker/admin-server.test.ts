import { connect, createServer } from 'node:net';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminError } from './admin-errors.js';
import { isLoopbackHost } from './admin-http.js';
import { createMetricsServer } from './admin-metrics-server.js';
import { type AdminBroker, type AdminServer, createAdminServer } from './admin-server.js';
import type { ConnectionInfo, Page, PageRequest, ShardInfo } from './types.js';

class BadTokenError extends Error {
  readonly code = 'invalid_argument';
}

/** Offset-token pagination over a fixed list, like a broker's listing. */
function paginate<T>(items: T[], request: PageRequest = {}, defaultSize = 50): Page<T> {
  let start = 0;
  if (request.pageToken !== undefined) {
    const m = /^o(\d+)$/.exec(request.pageToken);
    if (m === null) throw new BadTokenError(`bad page token ${request.pageToken}`);
    start = Number(m[1]);
  }
  const size = request.pageSize ?? defaultSize;
  const end = Math.min(items.length, start + size);
  const page: Page<T> = { items: items.slice(start, end) };
  if (end < items.length) page.nextPageToken = `o${end}`;
  return page;
}

interface FakeBroker extends AdminBroker {
  ready: boolean;
  failWith: Error | undefined;
}

function fakeBroker(shardCount: number, connCount: number) {
  const registry = new Registry();
  const counter = new Counter({
    name: 'persist_pubsub_test_things_total',
    help: 'things',
    registers: [registry],
  });
  counter.inc(7);
  const shards: ShardInfo[] = Array.from({ length: shardCount }, (_, i) => ({
    shardId: `s${String(i).padStart(8, '0')}-0000-0000-0000-000000000000`,
    subscribers: i % 5,
    ...(i % 2 === 0 ? { lastSeqno: String(i * 10) } : {}),
  }));
  const conns: ConnectionInfo[] = Array.from({ length: connCount }, (_, i) => ({
    connId: `c${i}`,
    callerId: `caller-${i % 3}`,
    remoteAddress: `127.0.0.1:${10000 + i}`,
    connectedAtMs: 1_700_000_000_000 + i,
    subscriptions: i,
    queueMessages: i % 7,
    queueBytes: (i % 7) * 256,
    dropped: i % 2,
  }));
  const requests: PageRequest[] = [];
  const broker: FakeBroker = {
    registry,
    ready: true,
    failWith: undefined,
    isReady() {
      return broker.ready;
    },
    listShards(request?: PageRequest) {
      requests.push({ ...request });
      if (broker.failWith) throw broker.failWith;
      return paginate(shards, request);
    },
    listConnections(request?: PageRequest) {
      requests.push({ ...request });
      return paginate(conns, request);
    },
  };
  return { broker, shards, conns, requests };
}

function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: 'debug' },
    {
      write(s: string) {
        lines.push(JSON.parse(s) as Record<string, unknown>);
      },
    },
  );
  return { logger, lines };
}

const servers: Array<{ destroy(): void }> = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.destroy();
});

async function started(broker: AdminBroker, host = '127.0.0.1'): Promise<AdminServer> {
  const admin = createAdminServer({ broker, listen: { host, port: 0 } });
  servers.push(admin);
  await admin.start();
  return admin;
}

function base(s: { address: { host: string; port: number } }): string {
  return `http://127.0.0.1:${s.address.port}`;
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url);
  expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('admin server', () => {
  it('serves /metrics from the broker registry with the Prometheus content type', async () => {
    const { broker } = fakeBroker(0, 0);
    const admin = await started(broker);
    const res = await fetch(`${base(admin)}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(broker.registry.contentType);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await res.text()).toContain('persist_pubsub_test_things_total 7');
  });

  it('answers /healthz 200 and /readyz by broker readiness, 503 for good once draining', async () => {
    const { broker } = fakeBroker(0, 0);
    const admin = await started(broker);
    expect((await getJson(`${base(admin)}/healthz`)).status).toBe(200);
    expect(await getJson(`${base(admin)}/readyz`)).toEqual({
      status: 200,
      body: { status: 'ready' },
    });
    broker.ready = false;
    expect(await getJson(`${base(admin)}/readyz`)).toEqual({
      status: 503,
      body: { status: 'not_ready', reason: 'broker' },
    });
    broker.ready = true;
    expect((await getJson(`${base(admin)}/readyz`)).status).toBe(200);
    admin.markDraining();
    expect(await getJson(`${base(admin)}/readyz`)).toEqual({
      status: 503,
      body: { status: 'not_ready', reason: 'draining' },
    });
    expect((await getJson(`${base(admin)}/healthz`)).status).toBe(200);
  });

  it('pages through many shards with tokens; no token on the last page', async () => {
    const { broker, shards } = fakeBroker(2345, 0);
    const admin = await started(broker);
    const seen: unknown[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const q = new URLSearchParams({ page_size: '100' });
      if (token !== undefined) q.set('page_token', token);
      const { status, body } = await getJson(`${base(admin)}/v1/shards?${q}`);
      expect(status).toBe(200);
      const items = body.shards as unknown[];
      expect(items.length).toBeLessThanOrEqual(100);
      seen.push(...items);
      token = body.next_page_token as string | undefined;
      if (token === undefined) expect(Object.keys(body)).toEqual(['shards']);
      pages++;
    } while (token !== undefined);
    expect(pages).toBe(24);
    expect(seen).toHaveLength(shards.length);
    expect(seen[0]).toEqual({
      shard_id: 's00000000-0000-0000-0000-000000000000',
      subscribers: 0,
      last_seqno: '0',
    });
    expect(seen[1]).toEqual({ shard_id: shards[1]?.shardId, subscribers: 1 });
    expect(new Set(seen.map((s) => (s as { shard_id: string }).shard_id))).toEqual(
      new Set(shards.map((s) => s.shardId)),
    );
  });

  it('pages through connections with snake_case fields; size absent or 0 means default', async () => {
    const { broker, conns, requests } = fakeBroker(0, 120);
    const admin = await started(broker);
    const first = await getJson(`${base(admin)}/v1/connections`);
    expect(requests.at(-1)).toEqual({});
    expect(first.body.connections).toHaveLength(50);
    expect((first.body.connections as unknown[])[4]).toEqual({
      conn_id: 'c4',
      caller_id: 'caller-1',
      remote_address: '127.0.0.1:10004',
      connected_at_ms: 1_700_000_000_004,
      subscriptions: 4,
      queue_messages: 4,
      queue_bytes: 1024,
      dropped: 0,
    });
    const zero = await getJson(`${base(admin)}/v1/connections?page_size=0`);
    expect(requests.at(-1)).toEqual({});
    expect(zero.body.connections).toHaveLength(50);
    const ids: string[] = [];
    let token: string | undefined;
    do {
      const q = token === undefined ? '' : `&page_token=${encodeURIComponent(token)}`;
      const { body } = await getJson(`${base(admin)}/v1/connections?page_size=7${q}`);
      ids.push(...(body.connections as Array<{ conn_id: string }>).map((c) => c.conn_id));
      token = body.next_page_token as string | undefined;
    } while (token !== undefined);
    expect(ids).toEqual(conns.map((c) => c.connId));
  });

  it.each([
    ['page_size=abc', 'page_size'],
    ['page_size=-1', 'page_size'],
    ['page_size=1.5', 'page_size'],
    ['page_size=10001', 'page_size'],
    ['page_size=1&page_size=2', 'page_size'],
    ['page_tokn=o5', 'page_tokn'],
    [`page_token=${'x'.repeat(1025)}`, 'page_token'],
    ['page_token=forged', 'bad page token'],
  ])('answers 400 with a JSON error for ?%s', async (query, mention) => {
    const { broker } = fakeBroker(10, 10);
    const admin = await started(broker);
    for (const path of ['/v1/shards', '/v1/connections']) {
      if (mention === 'bad page token' && path === '/v1/connections') continue;
      const { status, body } = await getJson(`${base(admin)}${path}?${query}`);
      expect(status).toBe(400);
      const error = body.error as { code: string; message: string };
      expect(error.code).toBe('invalid_argument');
      expect(error.message).toContain(mention);
    }
  });

  it('answers 404 for unknown paths and 405 with Allow for other methods', async () => {
    const { broker } = fakeBroker(1, 1);
    const admin = await started(broker);
    for (const path of ['/', '/v1', '/v1/shards/x', '/metricsx', '/v1/shard']) {
      const { status, body } = await getJson(`${base(admin)}${path}`);
      expect(status).toBe(404);
      expect((body.error as { code: string }).code).toBe('not_found');
    }
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const res = await fetch(`${base(admin)}/v1/shards`, { method });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, HEAD');
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
        'method_not_allowed',
      );
    }
    const head = await fetch(`${base(admin)}/readyz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('survives hostile request lines (bad absolute targets, garbage) and keeps serving', async () => {
    const { broker } = fakeBroker(1, 1);
    const admin = await started(broker);
    const raw = (text: string) =>
      new Promise<string>((resolve) => {
        const socket = connect(admin.address.port, '127.0.0.1');
        let got = '';
        socket.setEncoding('utf8');
        socket.on('data', (d: string) => {
          got += d;
        });
        socket.on('error', () => resolve(got));
        socket.on('close', () => resolve(got));
        socket.write(text);
        setTimeout(() => socket.end(), 200).unref();
      });
    for (const line of [
      'GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET http://%zz/metrics HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /v1/shards?page_size=%ff HTTP/1.1\r\nHost: x\r\n\r\n',
      '\u0000\u0001garbage\r\n\r\n',
    ]) {
      const answer = await raw(line);
      expect(answer, JSON.stringify(line)).toMatch(/^HTTP\/1\.1 (400|404) /);
    }
    expect((await fetch(`${base(admin)}/healthz`)).status).toBe(200);
  });

  it('answers 500 when a listing fails unexpectedly and keeps serving', async () => {
    const { broker } = fakeBroker(3, 0);
    const { logger, lines } = captureLogger();
    const admin = createAdminServer({ broker, listen: { host: '127.0.0.1', port: 0 }, logger });
    servers.push(admin);
    await admin.start();
    broker.failWith = new Error('boom');
    const { status, body } = await getJson(`${base(admin)}/v1/shards`);
    expect(status).toBe(500);
    expect((body.error as { code: string }).code).toBe('internal');
    expect(lines.some((l) => l.msg === 'admin request failed' && l.level === 50)).toBe(true);
    broker.failWith = undefined;
    expect((await getJson(`${base(admin)}/v1/shards`)).status).toBe(200);
    // One debug access line per request ('finish' may trail the response by a tick).
    await new Promise((r) => setTimeout(r, 20));
    const access = lines.filter((l) => l.msg === 'admin server request');
    expect(access.map((l) => l.status)).toEqual([500, 200]);
    expect(access[0]).toMatchObject({ level: 20, method: 'GET', target: '/v1/shards' });
  });

  it('validates options at construction, naming the field', () => {
    const { broker } = fakeBroker(0, 0);
    const bad = (f: () => unknown, text: string) => {
      try {
        f();
        expect.unreachable('should have thrown');
      } catch (err) {
        expect(err).toBeInstanceOf(AdminError);
        expect((err as AdminError).code).toBe('invalid_argument');
        expect((err as Error).message).toContain(text);
      }
    };
    bad(
      () => createAdminServer({ broker, listen: { host: '127.0.0.1', port: 70000 } }),
      'listen.port',
    );
    bad(() => createAdminServer({ broker, listen: { host: '', port: 1 } }), 'listen.host');
    bad(() => createAdminServer({ broker: {} as AdminBroker }), 'broker');
    bad(
      () => createMetricsServer({ registry: {} as Registry, listen: { host: '::1', port: 0 } }),
      'registry',
    );
  });

  it('defaults to 127.0.0.1:6880 and warns only on a non-loopback bind', async () => {
    const { broker } = fakeBroker(0, 0);
    expect(createAdminServer({ broker }).address).toEqual({ host: '127.0.0.1', port: 6880 });
    const loop = captureLogger();
    const a = createAdminServer({
      broker,
      listen: { host: '127.0.0.1', port: 0 },
      logger: loop.logger,
    });
    servers.push(a);
    await a.start();
    expect(loop.lines.filter((l) => l.level === 40)).toEqual([]);
    const wide = captureLogger();
    const b = createAdminServer({
      broker,
      listen: { host: '0.0.0.0', port: 0 },
      logger: wide.logger,
    });
    servers.push(b);
    await b.start();
    expect(b.address.host).toBe('0.0.0.0');
    expect(b.address.port).toBeGreaterThan(0);
    const warn = wide.lines.find((l) => l.level === 40);
    expect(warn?.msg).toContain('non-loopback');
    expect(warn?.component).toBe('admin');
  });

  it('classifies loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) {
      expect(isLoopbackHost(h)).toBe(true);
    }
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '::ffff:10.0.0.1']) {
      expect(isLoopbackHost(h)).toBe(false);
    }
  });

  it('fails to start on a port in use with listen_failed, and cannot start twice', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const { broker } = fakeBroker(0, 0);
      const admin = createAdminServer({ broker, listen: { host: '127.0.0.1', port } });
      await expect(admin.start()).rejects.toMatchObject({ code: 'listen_failed' });
      expect(admin.state).toBe('closed');
      const ok = await started(broker);
      await expect(ok.start()).rejects.toMatchObject({ code: 'bad_state' });
    } finally {
      blocker.close();
    }
  });

  it('start honours an aborted signal; close is idempotent and stops answering', async () => {
    const { broker } = fakeBroker(0, 0);
    const aborted = createAdminServer({ broker, listen: { host: '127.0.0.1', port: 0 } });
    await expect(aborted.start({ signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'aborted',
    });
    const admin = await started(broker);
    const url = `${base(admin)}/healthz`;
    expect((await fetch(url)).status).toBe(200);
    await Promise.all([admin.close(), admin.close()]);
    await admin.close();
    expect(admin.state).toBe('closed');
    await expect(fetch(url)).rejects.toThrow();
  });
});

describe('metrics server', () => {
  it('serves /metrics and /healthz only, from the given registry', async () => {
    const registry = new Registry();
    new Counter({ name: 'client_side_total', help: 'x', registers: [registry] }).inc(3);
    const server = createMetricsServer({ registry, listen: { host: '127.0.0.1', port: 0 } });
    servers.push(server);
    await server.start();
    const res = await fetch(`${base(server)}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(registry.contentType);
    expect(await res.text()).toContain('client_side_total 3');
    expect((await getJson(`${base(server)}/healthz`)).status).toBe(200);
    expect((await getJson(`${base(server)}/v1/shards`)).status).toBe(404);
    expect((await fetch(`${base(server)}/metrics`, { method: 'POST' })).status).toBe(405);
    await server.close();
    expect(server.state).toBe('closed');
  });
});
