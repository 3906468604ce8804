import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../src/broker/index.js';
import { createFlags, createGrpcPubSubClient, type PubSubClient } from '../src/client/index.js';
import { createTestPki, type TestPki } from './support/test-pki.js';
import { until } from './support/wait.js';

let pki: TestPki;
const pem = (f: string) => pki.pem(f);

const S = 's00000000-0000-0000-0000-0000000071c5';
let broker: Broker;
let url: string;
const clients: PubSubClient[] = [];

beforeAll(async () => {
  pki = createTestPki('client-tls-');
  pki.ca('ca');
  pki.ca('otherca');
  pki.leaf('server', 'ca', 'IP:127.0.0.1,DNS:localhost');
  pki.leaf('client', 'ca');
  broker = createBroker({
    listen: { host: '127.0.0.1', port: 0 },
    tls: { cert: pem('server.crt'), key: pem('server.key'), clientCa: pem('ca.crt') },
    authToken: 'tok-123',
  });
  await broker.start();
  url = `grpcs://127.0.0.1:${broker.address.port}`;
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.close();
  broker?.destroy();
  pki?.remove();
});

function client(opts: {
  ca: string;
  token: string;
  registry?: Registry;
  callerId?: string;
}): PubSubClient {
  const c = createGrpcPubSubClient({
    url,
    tls: { ca: pem(`${opts.ca}.crt`), cert: pem('client.crt'), key: pem('client.key') },
    authToken: opts.token,
    callerId: opts.callerId,
    flags: createFlags({
      persist_pubsub_reconnect_backoff_ms: 20,
      persist_pubsub_connect_max_backoff_ms: 50,
    }),
    registry: opts.registry,
  });
  clients.push(c);
  return c;
}

describe('grpcs:// client', () => {
  it('connects with CA + client certificate + bearer token and carries diffs', async () => {
    const a = client({ ca: 'ca', token: 'tok-123' });
    const b = client({ ca: 'ca', token: 'tok-123' });
    b.subscribe(S);
    await until(
      () =>
        a.status.state === 'connected' &&
        (broker.listShards().items.find((s) => s.shardId === S)?.subscribers ?? 0) === 1,
    );
    a.push(S, 1n, new Uint8Array([5]));
    for await (const ev of b.events()) {
      if (ev.kind === 'diff') {
        expect(ev).toMatchObject({ shardId: S, seqno: 1n });
        break;
      }
    }
  });

  it('a wrong token or an unknown CA never connects; errors are counted', async () => {
    const registry = new Registry();
    const badToken = client({ ca: 'ca', token: 'nope', registry, callerId: 'bad' });
    const badCa = client({ ca: 'otherca', token: 'tok-123', registry, callerId: 'bad' });
    badToken.subscribe(S);
    const seen = new Set<string>();
    const watch = (async () => {
      for await (const s of badToken.statusChanges()) seen.add(s.state);
    })();
    await new Promise((r) => setTimeout(r, 500));
    expect(badCa.status.state).not.toBe('connected');
    // The broker refuses the stream: the client may have had a channel, never a subscriber.
    expect(broker.listConnections().items.filter((c) => c.callerId === 'bad')).toHaveLength(0);
    const errors = await registry.getSingleMetric('persist_pubsub_client_errors_total')?.get();
    expect(errors?.values[0]?.value).toBeGreaterThanOrEqual(2);
    await badToken.close();
    await watch;
    // Refused at the stream (trailers-only UNAUTHENTICATED): never reported as connected.
    expect(seen.has('backoff')).toBe(true);
    expect(seen.has('connected')).toBe(false);
  });
});
