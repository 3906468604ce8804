import { mkdtempSync, rmSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFakeClock } from '../util/index.js';
import { createTestMetrics, silentLog } from './fanout.test-support.js';
import { createGrpcServer, type GrpcHandler, type GrpcServer } from './grpc-server.js';
import { afterH2Receive } from './node-h2-client.test-support.js';
import type { Http2ServerKind } from './server-stream.js';
import type { HostPort, ListenAddress } from './types.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const cleanup: Array<() => void> = [];
afterEach(async () => {
  // Not in the continuation of a call's answer: see node-h2-client.test-support.ts.
  await afterH2Receive();
  for (const f of cleanup.splice(0)) f();
});

/** The HTTP/2 server the suite runs on (it runs on both). */
let kind: Http2ServerKind = 'own';

async function setup(
  o: { maxTcpConnections?: number; routes?: Map<string, GrpcHandler>; listen?: ListenAddress } = {},
) {
  const clock = createFakeClock();
  const registry = new Registry();
  const metrics = createTestMetrics(registry);
  let closedEvents = 0;
  const server: GrpcServer = createGrpcServer({
    listen: o.listen ?? { host: '127.0.0.1', port: 0 },
    tls: undefined,
    http2Server: kind,
    routes: o.routes ?? new Map(),
    maxTcpConnections: o.maxTcpConnections ?? 100,
    handshakeTimeoutMs: 1000,
    clock,
    metrics,
    log: silentLog,
    onSession: () => {},
    onClosed: () => closedEvents++,
  });
  const listening = await server.listen();
  const address = listening as HostPort;
  cleanup.push(() => server.destroyAll());
  const rejections = async (limit: string) => {
    const m = await registry.getSingleMetric('persist_pubsub_server_rejections_total')?.get();
    return m?.values.find((v) => v.labels.limit === limit)?.value ?? 0;
  };
  return { server, address, listening, clock, rejections, closed: () => closedEvents };
}

/** A socket to the server's TCP port or Unix socket. */
const netConnectTo = (at: ListenAddress, onConnect?: () => void): Socket =>
  'path' in at ? netConnect(at.path, onConnect) : netConnect(at.port, '127.0.0.1', onConnect);

/** A raw socket to the server, reading (and discarding) what it sends, so that its close is seen. */
function openSocket(at: ListenAddress): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnectTo(at, () => resolve(s));
    s.on('error', reject);
    s.resume();
    cleanup.push(() => s.destroy());
  });
}

const closedSocket = (s: Socket) =>
  new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setImmediate(r));
}

function call(port: number, path: string, headers: Record<string, string> = {}) {
  const session = h2connect(`http://127.0.0.1:${port}`);
  cleanup.push(() => session.destroy());
  const req = session.request({
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc',
    ...headers,
  });
  req.end();
  return new Promise<Record<string, unknown>>((resolve) => {
    const got: Record<string, unknown> = {};
    req.on('response', (h) => Object.assign(got, h));
    req.on('trailers', (h) => Object.assign(got, h));
    req.on('close', () => resolve(got));
    req.resume();
  });
}

describe.each(['own', 'node'] as const)('grpc server (%s HTTP/2 server)', (k) => {
  beforeEach(() => {
    kind = k;
  });

  it('routes by method path; an unknown one is UNIMPLEMENTED; non-gRPC is 415', async () => {
    const routes = new Map<string, GrpcHandler>([
      ['/a.B/C', (stream) => stream.respondTrailersOnly({ code: 0, message: '' })],
    ]);
    const { address } = await setup({ routes });
    expect((await call(address.port, '/a.B/C'))['grpc-status']).toBe('0');
    expect((await call(address.port, '/a.B/D'))['grpc-status']).toBe('12');
    expect((await call(address.port, '/a.B/C', { 'content-type': 'text/plain' }))[':status']).toBe(
      415,
    );
  });

  it('closes a socket that sends no request within the handshake timeout', async () => {
    const { server, address, clock, rejections } = await setup();
    const idle = await openSocket(address);
    idle.write(PREFACE);
    await until(() => server.socketCount === 1);
    await clock.advance(999);
    expect(idle.destroyed).toBe(false);
    await clock.advance(1);
    await closedSocket(idle);
    expect(await rejections('handshake_timeout')).toBe(1);
    await until(() => server.socketCount === 0);
  });

  it('keeps a socket that opened a stream past the handshake timeout', async () => {
    const routes = new Map<string, GrpcHandler>([['/a.B/C', () => {}]]);
    const { server, address, clock, rejections } = await setup({ routes });
    const session = h2connect(`http://127.0.0.1:${address.port}`);
    cleanup.push(() => session.destroy());
    session.request({ ':method': 'POST', ':path': '/a.B/C', 'content-type': 'application/grpc' });
    await until(() => clock.pending() === 0 && server.sessionCount === 1);
    await clock.advance(5000);
    expect(session.destroyed).toBe(false);
    expect(await rejections('handshake_timeout')).toBe(0);
  });

  it('closes TCP connections over maxTcpConnections at once, and counts them', async () => {
    const { server, address, rejections } = await setup({ maxTcpConnections: 3 });
    const kept = await Promise.all([1, 2, 3].map(() => openSocket(address)));
    await until(() => server.socketCount === 3);
    const extra = await openSocket(address);
    await closedSocket(extra);
    expect(await rejections('tcp_connections')).toBe(1);
    expect(server.socketCount).toBe(3);
    expect(kept.every((s) => !s.destroyed)).toBe(true);
  });
});

/** A fresh Unix socket path, its directory removed at cleanup. */
function socketPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pp-grpc-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'g.sock');
}

describe.each([
  ['own', 'tcp'],
  ['own', 'unix'],
  ['node', 'tcp'],
  ['node', 'unix'],
] as const)('handshake timeout (%s HTTP/2 server, %s)', (k, transport) => {
  beforeEach(() => {
    kind = k;
  });

  it('closes the connection that sent only the preface at the timeout, not the one with a stream', async () => {
    const routes = new Map<string, GrpcHandler>([['/a.B/C', () => {}]]);
    const { server, listening, clock, rejections } = await setup({
      routes,
      listen: transport === 'unix' ? { path: socketPath() } : { host: '127.0.0.1', port: 0 },
    });
    // The good connection first, then the idle one, then the good one opens its stream: a
    // deadline found by anything but the connection's own session would mix the two up.
    const good = h2connect('http://localhost', { createConnection: () => netConnectTo(listening) });
    good.on('error', () => {});
    cleanup.push(() => good.destroy());
    await until(() => server.sessionCount === 1);
    const idle = await openSocket(listening);
    idle.write(PREFACE);
    await until(() => server.sessionCount === 2);
    good.request({ ':method': 'POST', ':path': '/a.B/C', 'content-type': 'application/grpc' });
    await until(() => clock.pending() === 1);
    await clock.advance(999);
    expect(idle.destroyed).toBe(false);
    await clock.advance(1);
    await closedSocket(idle);
    expect(await rejections('handshake_timeout')).toBe(1);
    await until(() => server.socketCount === 1);
    await clock.advance(5000);
    expect(good.destroyed).toBe(false);
    expect(server.sessionCount).toBe(1);
    expect(await rejections('handshake_timeout')).toBe(1);
  });
});
