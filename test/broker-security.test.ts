/**
 * TLS, mTLS and bearer tokens on the broker's gRPC port, with real clients. Certificates are
 * made per run with the `openssl` CLI (a CA, a server cert for 127.0.0.1/localhost, a client
 * cert from that CA, and a client cert from another CA).
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../src/broker/index.js';
import { type ClientKind, openClient, type TestClient, until } from './support/grpc-clients.js';

const dir = mkdtempSync(join(tmpdir(), 'broker-tls-'));
const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

function makeCa(name: string): void {
  ssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.crt`,
  );
}

function makeCert(name: string, ca: string, san?: string): void {
  ssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    `/CN=${name}`,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
  );
  const args = [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.crt`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    `${name}.crt`,
  ];
  if (san !== undefined) {
    execFileSync('sh', ['-c', `printf 'subjectAltName=${san}' > ${name}.ext`], { cwd: dir });
    args.push('-extfile', `${name}.ext`);
  }
  ssl(...args);
}

const pem = (f: string) => readFileSync(join(dir, f), 'utf8');
const shard = () => `s${randomUUID()}`;
const open: TestClient[] = [];
const brokers: Broker[] = [];

beforeAll(() => {
  makeCa('ca');
  makeCa('otherca');
  makeCert('server', 'ca', 'DNS:localhost,IP:127.0.0.1');
  makeCert('client', 'ca');
  makeCert('intruder', 'otherca');
});

afterEach(async () => {
  for (const c of open.splice(0)) c.close();
});

afterAll(async () => {
  for (const b of brokers) b.destroy();
  rmSync(dir, { recursive: true, force: true });
});

async function start(options: Parameters<typeof createBroker>[0]): Promise<string> {
  const b = createBroker({ listen: { host: '127.0.0.1', port: 0 }, ...options });
  brokers.push(b);
  await b.start();
  return `127.0.0.1:${b.address.port}`;
}

async function roundTrip(a: TestClient, b: TestClient, broker: Broker): Promise<void> {
  const s = shard();
  a.subscribe(s);
  await until(() => broker.listShards({ pageSize: 1000 }).items.some((x) => x.shardId === s));
  b.push(s, 1n, Uint8Array.of(1, 2, 3));
  const [m] = await a.waitFor(1);
  expect(m?.message.case).toBe('pushDiff');
}

describe('TLS', () => {
  let address: string;
  let broker: Broker;
  beforeAll(async () => {
    address = await start({ tls: { cert: pem('server.crt'), key: pem('server.key') } });
    broker = brokers[brokers.length - 1]!;
  });

  it.each<ClientKind>(['grpc-js', 'connect', 'python'])(
    'serves a %s client over TLS',
    async (kind) => {
      const opts = { ca: pem('ca.crt'), caPath: join(dir, 'ca.crt') };
      const a = await openClient(kind, address, opts);
      const b = await openClient('grpc-js', address, opts);
      open.push(a, b);
      await roundTrip(a, b, broker);
    },
  );

  it('a plaintext client cannot talk to the TLS port', async () => {
    const c = await openClient('grpc-js', address);
    open.push(c);
    expect((await c.ended).code).toBe('UNAVAILABLE');
  });
});

describe('mTLS', () => {
  let address: string;
  let broker: Broker;
  beforeAll(async () => {
    address = await start({
      tls: { cert: pem('server.crt'), key: pem('server.key'), clientCa: pem('ca.crt') },
    });
    broker = brokers[brokers.length - 1]!;
  });

  it('accepts a client certificate from the configured CA', async () => {
    const opts = { ca: pem('ca.crt'), cert: pem('client.crt'), key: pem('client.key') };
    const a = await openClient('grpc-js', address, opts);
    const b = await openClient('grpc-js', address, opts);
    open.push(a, b);
    await roundTrip(a, b, broker);
  });

  it('rejects a client certificate from another CA, and no certificate at all', async () => {
    const wrong = await openClient('grpc-js', address, {
      ca: pem('ca.crt'),
      cert: pem('intruder.crt'),
      key: pem('intruder.key'),
    });
    const none = await openClient('grpc-js', address, { ca: pem('ca.crt') });
    open.push(wrong, none);
    expect((await wrong.ended).code).toBe('UNAVAILABLE');
    expect((await none.ended).code).toBe('UNAVAILABLE');
    expect(broker.listConnections().items).toHaveLength(0);
  });
});

describe('bearer token', () => {
  let address: string;
  let broker: Broker;
  beforeAll(async () => {
    address = await start({ authToken: 'sekrit-token-1' });
    broker = brokers[brokers.length - 1]!;
  });

  it.each<ClientKind>(['grpc-js', 'connect', 'python'])(
    'missing or wrong token → UNAUTHENTICATED (%s)',
    async (kind) => {
      const missing = await openClient(kind, address);
      const wrong = await openClient(kind, address, { token: 'sekrit-token-2' });
      open.push(missing, wrong);
      expect(await missing.ended).toMatchObject({ code: 'UNAUTHENTICATED' });
      expect(await wrong.ended).toMatchObject({ code: 'UNAUTHENTICATED' });
    },
  );

  it('the right token works', async () => {
    const a = await openClient('python', address, { token: 'sekrit-token-1' });
    const b = await openClient('connect', address, { token: 'sekrit-token-1' });
    open.push(a, b);
    await roundTrip(a, b, broker);
    const text = await broker.registry.metrics();
    expect(text).toMatch(/persist_pubsub_server_rejections_total\{limit="unauthenticated"\} [1-9]/);
  });

  it('health checks need no token', async () => {
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    const res = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(
        '/grpc.health.v1.Health/Check',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        (err, value) => (err ? reject(err) : resolve(value!)),
      ),
    );
    client.close();
    // HealthCheckResponse { status: SERVING (1) }
    expect([...res]).toEqual([0x08, 0x01]);
  });
});
