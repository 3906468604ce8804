/**
 * Our gRPC client (`createGrpcTransport`, gRPC framing on `node:http2`) against three
 * independent servers: grpc-js, connect-node and Python grpcio (C-core). Each is a tiny
 * reference broker (`test/support/grpc-servers.ts`): headers, subscribe with a resume seqno, a
 * push forwarded to the other client with the server's stamp, a call ended by the server
 * (reconnect and re-subscribe), and a refused token (no connection, backoff).
 */
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createFlags } from '../src/client/flags.js';
import { createGrpcPubSubClient } from '../src/client/grpc-pubsub-client.js';
import type { PubSubClient } from '../src/client/pubsub-client.js';
import { clientMissing } from './support/grpc-clients.js';
import { type ServerKind, startTestServer } from './support/grpc-servers.js';
import { nextOf, until } from './support/wait.js';

const S = 's00000000-0000-0000-0000-00000000beef';
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const flags = () =>
  createFlags({
    persist_pubsub_reconnect_backoff_ms: 20,
    persist_pubsub_connect_max_backoff_ms: 50,
  });

function client(
  port: number,
  callerId: string,
  extra: { authToken?: string; registry?: Registry } = {},
) {
  const c: PubSubClient = createGrpcPubSubClient({
    url: `grpc://127.0.0.1:${port}`,
    callerId,
    flags: flags(),
    initialConnectBackoffMs: 10,
    ...extra,
  });
  cleanup.push(() => c.close());
  return c;
}

// The Python server needs the same prerequisite as the Python client (skipped loudly without it).
const kinds = (['grpc-js', 'connect', 'python'] as const).filter(
  (k) => k !== 'python' || !clientMissing('python'),
);

describe.each<ServerKind>(kinds)('gRPC client against a %s server', (kind) => {
  it('sends headers and resume seqnos; receives forwarded pushes with the server stamp', async () => {
    const server = await startTestServer(kind, { token: 'sekret' });
    cleanup.push(() => server.close());
    const writer = client(server.port, 'writer-1', { authToken: 'sekret' });
    const reader = client(server.port, 'reader-1', { authToken: 'sekret' });
    reader.subscribe(S, { resumeAfterSeqno: 41n });
    const events = reader.events()[Symbol.asyncIterator]();
    await nextOf(events, 'resync');
    await until(
      () => writer.status.state === 'connected' && server.calls.some((c) => c.subs.has(S)),
    );

    expect(writer.push(S, 42n, new Uint8Array([1, 2, 3]), 1_700_000_000_123.5)).toBe(true);
    const diff = await nextOf(events, 'diff');
    expect(diff).toMatchObject({ shardId: S, seqno: 42n, brokerTimestampMs: 1_700_000_000_500 });
    expect(diff.kind === 'diff' && [...diff.diff]).toEqual([1, 2, 3]);
    expect(diff.kind === 'diff' && diff.originTimestampMs).toBeCloseTo(1_700_000_000_123.5, 3);

    const readerCall = server.calls.find((c) => c.subs.has(S));
    expect(readerCall?.metadata.get('persist-pubsub-caller-id')).toEqual(['reader-1']);
    expect(readerCall?.metadata.get('persist-pubsub-extensions')).toEqual(['1']);
    expect(readerCall?.metadata.get('authorization')).toEqual(['Bearer sekret']);
    const sub = readerCall?.received.find((m) => m.message.case === 'subscribe');
    expect(sub?.message.value).toMatchObject({ shardId: S, resumeAfterSeqno: 41n });
  });

  it('a call the server ends is reconnected and its subscriptions re-sent', async () => {
    const server = await startTestServer(kind);
    cleanup.push(() => server.close());
    const reader = client(server.port, 'reader');
    const writer = client(server.port, 'writer');
    reader.subscribe(S);
    await until(
      () => writer.status.state === 'connected' && server.calls.some((c) => c.subs.has(S)),
    );
    const before = server.calls.length;
    server.endAll();
    await until(
      () =>
        reader.status.state === 'connected' &&
        (reader.status as { connections: number }).connections === 2 &&
        server.calls.slice(before).some((c) => c.subs.has(S)),
    );
    const events = reader.events()[Symbol.asyncIterator]();
    await until(() => writer.status.state === 'connected');
    // The writer's call was ended too; once it is back, pushes flow again.
    for (let i = 0; i < 100 && writer.status.state === 'connected'; i++) {
      writer.push(S, 7n, new Uint8Array([7]));
      const got = await Promise.race([
        nextOf(events, 'diff'),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 50)),
      ]);
      if (got !== undefined) {
        expect(got).toMatchObject({ shardId: S, seqno: 7n });
        return;
      }
    }
    throw new Error('no diff after the reconnect');
  });

  it('a refused token fails with its status and backs off', async () => {
    const server = await startTestServer(kind, { token: 'sekret' });
    cleanup.push(() => server.close());
    const registry = new Registry();
    const c = client(server.port, 'intruder', { authToken: 'wrong', registry });
    let error = '';
    for await (const st of c.statusChanges()) {
      // grpc-js and grpcio refuse trailers-only, which fails the connect attempt; connect-node
      // sends headers first, so that call counts as connected until its status arrives.
      if (kind !== 'connect') expect(st.state).not.toBe('connected');
      if (st.state === 'backoff') {
        error = st.error;
        break;
      }
    }
    expect(error).toMatch(/pubsub stream failed: 16 /);
  });
});
