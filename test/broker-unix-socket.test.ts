/**
 * The broker on a Unix domain socket (`listen: { path }`, `--listen unix:PATH`), for a sidecar
 * whose clients share its host: both HTTP/2 servers; the SDK's writer and reader over it (a
 * commit seen by push, no Consensus read); grpc-js and Python grpcio peers with their own
 * `unix:` targets; the socket file's lifecycle (a stale file replaced, a live socket or another
 * file refused and left alone, the file removed on close, its mode); peers on a socket told
 * apart (listings, handshake timeout).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Broker,
  BrokerError,
  createBroker,
  type Http2ServerKind,
  type UnixSocketAddress,
} from '../src/broker/index.js';
import { createPersistClient } from '../src/client/index.js';
import { createMemoryConsensus } from '../src/consensus/index.js';
import { createFakeClock } from '../src/util/index.js';
import { countingConsensus } from './support/counting-consensus.js';
import {
  clientMissing,
  openClient,
  openRaw,
  type TestClient,
  until,
} from './support/grpc-clients.js';
import { openWriterAndReader } from './support/writer-reader.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const shard = (n: number) => `s00000000-0000-0000-0000-0000000${String(n).padStart(5, '0')}`;

/** A fresh directory for socket files (short: a socket path holds 107 bytes). */
function socketDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pp-uds-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function startBroker(
  path: string,
  options: { http2Server?: Http2ServerKind; mode?: number } = {},
): Promise<Broker<UnixSocketAddress>> {
  const broker = createBroker({
    listen: { path, ...(options.mode === undefined ? {} : { mode: options.mode }) },
    http2Server: options.http2Server,
  });
  await broker.start();
  cleanup.push(() => broker.destroy());
  return broker;
}

async function client(kind: 'grpc-js' | 'python', target: string): Promise<TestClient> {
  const c = await openClient(kind, target);
  cleanup.push(() => c.close());
  return c;
}

/** A socket file nobody accepts on: a process that bound it and exited without closing it. */
function staleSocket(path: string): void {
  const r = spawnSync(process.execPath, [
    '-e',
    `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.exit(0))`,
  ]);
  expect(r.status).toBe(0);
  expect(statSync(path).isSocket()).toBe(true);
}

describe.each(['own', 'node'] as const)(
  'broker on a Unix socket (%s HTTP/2 server)',
  (http2Server) => {
    it('relays between grpc-js peers dialling unix:PATH and unix:///PATH', async () => {
      const path = join(socketDir(), 'b.sock');
      const broker = await startBroker(path, { http2Server });
      expect(broker.address).toEqual({ path });
      const sub = await client('grpc-js', `unix:${path}`);
      const pub = await client('grpc-js', `unix://${path}`);
      sub.subscribe(shard(1));
      await until(
        () => broker.listShards().items.some((s) => s.subscribers === 1),
        5000,
        'subscribed',
      );
      pub.push(shard(1), 1n, new Uint8Array([7, 7]));
      const [m] = await sub.waitFor(1);
      expect(m?.message.case).toBe('pushDiff');
      // Peers on a socket have no address: each is `unix` and its descriptor, told apart.
      const peers = broker.listConnections().items.map((c) => c.remoteAddress);
      expect(peers).toHaveLength(2);
      expect(peers.every((p) => /^unix:\d+$/.test(p))).toBe(true);
      expect(new Set(peers).size).toBe(2);
    });
  },
);

describe('broker on a Unix socket', () => {
  it('an SDK writer and reader over unix: see each commit by push, no Consensus read', async () => {
    const path = join(socketDir(), 'sdk.sock');
    await startBroker(path);
    const store = createMemoryConsensus();
    const w = countingConsensus(store);
    const r = countingConsensus(store);
    const config = {
      persist_pubsub_reconnect_backoff_ms: 20,
      persist_pubsub_connect_max_backoff_ms: 50,
      // A slow first poll: a reader that sees a commit sooner got it through pubsub.
      persist_next_listen_batch_retryer_fixed_sleep_ms: 2000,
    };
    const writer = await createPersistClient({
      consensus: w.consensus,
      pubsub: `unix:${path}`,
      callerId: 'writer',
      config,
    });
    const reader = await createPersistClient({
      consensus: r.consensus,
      pubsub: `unix://${path}`,
      callerId: 'reader',
      config,
    });
    cleanup.push(
      () => writer.close(),
      () => reader.close(),
    );
    const S = shard(2);
    const { wh, rh } = await openWriterAndReader(writer, reader, S, cleanup);
    await new Promise((res) => setTimeout(res, 50)); // the resync catch-up read settles
    const readsBefore = r.counts.reads;
    for (let i = 1; i <= 10; i++) {
      const res = await wh.update((s) => s + 1);
      const seen = await rh.waitForSeqno(res.seqno, { signal: AbortSignal.timeout(1000) });
      expect(seen.state).toBe(i);
    }
    expect(r.counts.reads - readsBefore).toBe(0);
  });

  it.skipIf(clientMissing('python'))('relays to a Python grpcio peer on unix:PATH', async () => {
    const path = join(socketDir(), 'py.sock');
    const broker = await startBroker(path);
    const sub = await client('python', `unix:${path}`);
    const pub = await client('grpc-js', `unix:${path}`);
    sub.subscribe(shard(3));
    await until(
      () => broker.listShards().items.some((s) => s.subscribers === 1),
      5000,
      'subscribed',
    );
    pub.push(shard(3), 1n, new Uint8Array([1]));
    const [m] = await sub.waitFor(1);
    expect(m?.message.case).toBe('pushDiff');
  });

  it('replaces a stale socket file, and removes its own on close', async () => {
    const path = join(socketDir(), 'stale.sock');
    staleSocket(path);
    const broker = await startBroker(path);
    const c = await client('grpc-js', `unix:${path}`);
    c.subscribe(shard(4));
    await until(() => broker.listShards().items.length === 1, 5000, 'subscribed');
    c.close();
    await broker.close({ deadlineMs: 1000 });
    expect(existsSync(path)).toBe(false);
  });

  it('refuses a socket another process accepts on, and leaves it alone', async () => {
    const path = join(socketDir(), 'live.sock');
    const other = createServer((s) => s.end());
    await new Promise<void>((res) => other.listen(path, res));
    cleanup.push(() => new Promise((res) => other.close(res)));
    const broker = createBroker({ listen: { path } });
    cleanup.push(() => broker.destroy());
    const err = await broker.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('unavailable');
    expect((err as BrokerError).message).toMatch(/in use/);
    expect(statSync(path).isSocket()).toBe(true);
    expect(other.listening).toBe(true);
  });

  it('refuses a path that is not a socket, and leaves the file alone', async () => {
    const path = join(socketDir(), 'file.sock');
    writeFileSync(path, 'keep me');
    const broker = createBroker({ listen: { path } });
    cleanup.push(() => broker.destroy());
    const err = await broker.start().catch((e: unknown) => e);
    expect((err as BrokerError).code).toBe('invalid_argument');
    expect((err as BrokerError).message).toMatch(/not a socket/);
    expect(statSync(path).isFile()).toBe(true);
  });

  it('sets the socket mode', async () => {
    const path = join(socketDir(), 'mode.sock');
    await startBroker(path, { mode: 0o600 });
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('validates the address at construction: path, mode, no TLS', () => {
    const invalid = (f: () => unknown, message: RegExp) => {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect((err as BrokerError).code).toBe('invalid_argument');
      expect((err as BrokerError).message).toMatch(message);
    };
    invalid(() => createBroker({ listen: { path: '' } }), /listen\.path/);
    invalid(() => createBroker({ listen: { path: `/${'x'.repeat(200)}` } }), /listen\.path/);
    invalid(() => createBroker({ listen: { path: '/tmp/x.sock', mode: 0o1777 } }), /listen\.mode/);
    invalid(
      () => createBroker({ listen: { path: '/tmp/x.sock' }, tls: { cert: 'c', key: 'k' } }),
      /tls is for a TCP listener/,
    );
  });

  it('the handshake timeout tells socket peers apart: it closes the idle one, not the one with a stream', async () => {
    const path = join(socketDir(), 'hs.sock');
    const clock = createFakeClock();
    const broker = createBroker({ listen: { path }, clock, handshakeTimeoutMs: 1000 });
    await broker.start();
    cleanup.push(() => broker.destroy());
    const sockets = async () =>
      (await broker.registry.getSingleMetric('persist_pubsub_server_tcp_connections')?.get())
        ?.values[0]?.value ?? 0;
    // A session connected first, then an idle socket, then the session opens its stream: peers
    // keyed by a missing address would mix the two up.
    const session = http2Connect('http://localhost', { createConnection: () => netConnect(path) });
    session.on('error', () => {});
    cleanup.push(() => session.destroy());
    await until(async () => (await sockets()) === 1, 5000, 'session accepted');
    const idle = netConnect(path);
    idle.on('error', () => {});
    idle.resume();
    cleanup.push(() => idle.destroy());
    await until(async () => (await sockets()) === 2, 5000, 'idle socket accepted');
    const call = openRaw('localhost', { session });
    cleanup.push(() => call.close());
    await until(() => broker.listConnections().items.length === 1, 5000, 'stream open');
    await clock.advance(5000);
    await until(() => idle.destroyed, 5000, 'idle socket closed');
    expect(session.destroyed).toBe(false);
    expect(broker.listConnections().items).toHaveLength(1);
  });
});
