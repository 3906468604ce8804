/**
 * Bad-input hardening at the TCP and HTTP/2 level (issue 14, item 5): idle sockets that never
 * send a request are closed after the handshake timeout, TCP connections are bounded, an
 * over-limit message sent at full speed gets RESOURCE_EXHAUSTED with a message, and a stream
 * whose TCP connection was lost is counted as RESET, never as OK. The broker's clock is fake:
 * the timeout fires when the test says, with no sleeps.
 */
import { connect as h2connect } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type Broker, type BrokerOptions, createBroker } from '../src/broker/index.js';
import { afterH2Receive } from '../src/broker/node-h2-client.test-support.js';
import { createFakeClock, type FakeClock } from '../src/util/index.js';
import { openRaw, until } from './support/grpc-clients.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** An empty HTTP/2 SETTINGS frame: what a client sends right after the preface. */
const SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  // Not in the continuation of a call's answer: see node-h2-client.test-support.ts.
  await afterH2Receive();
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function start(
  options: Omit<BrokerOptions, 'listen'> = {},
): Promise<{ broker: Broker; address: string; clock: FakeClock }> {
  const clock = createFakeClock();
  const broker = createBroker({ listen: { host: '127.0.0.1', port: 0 }, clock, ...options });
  await broker.start();
  cleanup.push(() => broker.destroy());
  return { broker, address: `127.0.0.1:${broker.address.port}`, clock };
}

async function metric(broker: Broker, name: string, label: string, value: string) {
  const m = await broker.registry.getSingleMetric(`persist_pubsub_server_${name}`)?.get();
  return m?.values.find((v) => v.labels[label] === value)?.value ?? 0;
}

async function tcpConnections(broker: Broker): Promise<number> {
  const m = await broker.registry.getSingleMetric('persist_pubsub_server_tcp_connections')?.get();
  return m?.values[0]?.value ?? 0;
}

function openSocket(address: string): Promise<Socket> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const s = netConnect(Number(port), host, () => resolve(s));
    s.on('error', reject);
    s.resume();
    cleanup.push(() => {
      s.destroy();
    });
  });
}

const closed = (s: Socket) =>
  new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));

describe('broker hardening', () => {
  it('closes 300 sockets that send the HTTP/2 preface and nothing else at the handshake timeout', async () => {
    const { broker, address, clock } = await start({ handshakeTimeoutMs: 10_000 });
    const sockets = await Promise.all(Array.from({ length: 300 }, () => openSocket(address)));
    for (const s of sockets) s.write(Buffer.concat([PREFACE, SETTINGS]));
    await until(async () => (await tcpConnections(broker)) === 300, 10_000, '300 sockets');
    await clock.advance(9_999);
    expect(sockets.filter((s) => s.destroyed)).toHaveLength(0);
    await clock.advance(1);
    await Promise.all(sockets.map(closed));
    expect(await metric(broker, 'rejections_total', 'limit', 'handshake_timeout')).toBe(300);
    await until(async () => (await tcpConnections(broker)) === 0, 10_000, 'no sockets');
    // A real client still gets served.
    const call = openRaw(address);
    cleanup.push(() => call.close());
    await until(async () => broker.listConnections().items.length === 1, 10_000, 'a connection');
  });

  it('bounds TCP connections: beyond maxTcpConnections a socket is closed at once and counted', async () => {
    const { broker, address } = await start({ limits: { maxTcpConnections: 5 } });
    const kept = await Promise.all(Array.from({ length: 5 }, () => openSocket(address)));
    await until(async () => (await tcpConnections(broker)) === 5, 10_000, '5 sockets');
    const extra = await Promise.all(Array.from({ length: 3 }, () => openSocket(address)));
    await Promise.all(extra.map(closed));
    expect(await metric(broker, 'rejections_total', 'limit', 'tcp_connections')).toBe(3);
    expect(kept.filter((s) => s.destroyed)).toHaveLength(0);
    expect(await tcpConnections(broker)).toBe(5);
  });

  it('answers a 20 MB message sent at full speed with RESOURCE_EXHAUSTED and a message', async () => {
    const { broker, address, clock } = await start();
    // node:http2's own client refuses to queue more than maxSessionMemory (10 MB by default)
    // and resets its stream with ENHANCE_YOUR_CALM locally, before the broker answers: that,
    // not the broker, is where a 20 MB single write used to end. A client that can hold it
    // gets the broker's status.
    const session = h2connect(`http://${address}`, { maxSessionMemory: 100 });
    const call = openRaw(address, { session });
    cleanup.push(() => session.destroy());
    const body = Buffer.alloc(20 * 1024 * 1024);
    call.sendMessage(body);
    const end = await call.ended;
    expect(end.grpcStatus).toBe('8');
    expect(end.grpcMessage).toMatch(/exceeds the limit/);
    expect(await metric(broker, 'rejections_total', 'limit', 'message_size')).toBe(1);
    // The peer keeps sending after the trailers: the stream is reset after the 5 s grace.
    await clock.advance(5_000);
    await until(
      async () =>
        (await metric(broker, 'connections_closed_total', 'status', 'RESOURCE_EXHAUSTED')) === 1,
      10_000,
      'closed as RESOURCE_EXHAUSTED',
    );
  });

  it('counts a stream whose TCP connection is lost as RESET, and a half-close as OK', async () => {
    const { broker, address } = await start();
    const [host, port] = address.split(':');
    for (const how of ['fin', 'rst'] as const) {
      let raw: Socket | undefined;
      const session = h2connect(`http://${address}`, {
        createConnection: () => {
          raw = netConnect(Number(port), host);
          return raw;
        },
      });
      const call = openRaw(address, { session });
      call.sendMessage(Buffer.from([0x1a, 3, 0x0a, 1, 0x61]));
      await until(async () => broker.listShards().items.length === 1, 10_000, 'subscribed');
      if (how === 'fin') raw?.destroy();
      else raw?.resetAndDestroy();
      await until(async () => broker.listConnections().items.length === 0, 10_000, 'gone');
    }
    expect(await metric(broker, 'connections_closed_total', 'status', 'RESET')).toBe(2);
    expect(await metric(broker, 'connections_closed_total', 'status', 'OK')).toBe(0);
    const call = openRaw(address);
    call.sendMessage(Buffer.from([0x1a, 3, 0x0a, 1, 0x61]));
    await until(async () => broker.listShards().items.length === 1, 10_000, 'subscribed');
    call.stream.end();
    expect((await call.ended).grpcStatus).toBe('0');
    await until(
      async () => (await metric(broker, 'connections_closed_total', 'status', 'OK')) === 1,
      10_000,
      'closed as OK',
    );
    call.close();
  });
});
