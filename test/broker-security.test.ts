import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, type BrokerOptions, createBroker } from '../src/broker/index.js';
import {
  type ClientKind,
  clientMissing,
  openClient,
  type TestClient,
  until,
} from './support/grpc-clients.js';
import { createTestPki } from './support/test-pki.js';

const pki = createTestPki('broker-tls-');

const pem = (f: string) => pki.pem(f);
const shard = () => `s${randomUUID()}`;
const open: TestClient[] = [];
const brokers: Broker[] = [];

beforeAll(() => {
  pki.ca('ca');
  pki.ca('otherca');
  pki.leaf('server', 'ca', 'DNS:localhost,IP:127.0.0.1');
  pki.leaf('client', 'ca');
  pki.leaf('intruder', 'otherca');
});

afterEach(async () => {
  for (const c of open.splice(0)) c.close();
});

afterAll(async () => {
  for (const b of brokers) b.destroy();
  pki.remove();
});

async function start(options: Omit<BrokerOptions, 'listen'>): Promise<string> {
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

  it.for<ClientKind>(['grpc-js', 'connect', 'python'])(
    'serves a %s client over TLS',
    async (kind, { skip }) => {
      if (clientMissing(kind)) skip();
      const opts = { ca: pem('ca.crt'), caPath: pki.path('ca.crt') };
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

  it.for<ClientKind>(['grpc-js', 'connect', 'python'])(
    'missing or wrong token → UNAUTHENTICATED (%s)',
    async (kind, { skip }) => {
      if (clientMissing(kind)) skip();
      const missing = await openClient(kind, address);
      const wrong = await openClient(kind, address, { token: 'sekrit-token-2' });
      open.push(missing, wrong);
      expect(await missing.ended).toMatchObject({ code: 'UNAUTHENTICATED' });
      expect(await wrong.ended).toMatchObject({ code: 'UNAUTHENTICATED' });
    },
  );

  it.skipIf(clientMissing('python'))('the right token works', async () => {
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
