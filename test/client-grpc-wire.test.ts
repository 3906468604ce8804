/**
 * The gRPC transport against a tiny grpc-js server that records what arrives on the wire and
 * forwards pushes like the reference broker (to every other subscriber, never back). It pins
 * the wire details: method path, caller-id / extensions / authorization headers, the origin
 * timestamp (field 4) on pushes, resume seqnos on subscribes, gap notices decoded.
 */

import { type AddressInfo, createServer, type Socket } from 'node:net';
import { create, toBinary } from '@bufbuild/protobuf';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createFlags } from '../src/client/flags.js';
import { createGrpcPubSubClient } from '../src/client/grpc-pubsub-client.js';
import type { PubSubClient } from '../src/client/pubsub-client.js';
import {
  ProtoGapReason,
  ProtoPubSubMessageSchema,
} from '../src/gen/mz_persist_client/internal/service/pubsub_pb.js';
import { startTestServer } from './support/grpc-servers.js';
import { nextOf, until } from './support/wait.js';

const startTinyBroker = (port = 0) => startTestServer('grpc-js', { port });

const S = 's00000000-0000-0000-0000-000000000001';
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe('gRPC transport wire use', () => {
  it('sends headers, origin timestamps and resume seqnos; decodes diffs and gaps', async () => {
    const tiny = await startTinyBroker();
    cleanup.push(() => tiny.close());
    const flags = createFlags({ persist_pubsub_reconnect_backoff_ms: 10 });
    const url = `grpc://127.0.0.1:${tiny.port}`;
    const writer = createGrpcPubSubClient({
      url,
      callerId: 'writer-1',
      authToken: 'sekret',
      flags,
    });
    const reader = createGrpcPubSubClient({ url, callerId: 'reader-1', flags });
    cleanup.push(
      () => writer.close(),
      () => reader.close(),
    );
    reader.subscribe(S, { resumeAfterSeqno: 41n });
    const events = reader.events()[Symbol.asyncIterator]();
    await nextOf(events, 'resync');
    await until(() => writer.status.state === 'connected' && tiny.calls.length === 2);
    await until(() => tiny.calls.some((c) => c.subs.has(S)));

    expect(writer.push(S, 42n, new Uint8Array([1, 2, 3]), 1_700_000_000_123.5)).toBe(true);
    const diff = await nextOf(events, 'diff');
    expect(diff).toMatchObject({ shardId: S, seqno: 42n });
    expect(diff.kind === 'diff' && [...diff.diff]).toEqual([1, 2, 3]);
    expect(diff.kind === 'diff' && diff.originTimestampMs).toBeCloseTo(1_700_000_000_123.5, 3);
    expect(diff.kind === 'diff' && diff.brokerTimestampMs).toBe(1_700_000_000_500);

    const readerConn = tiny.calls.find((c) => c.subs.has(S))!;
    const writerConn = tiny.calls.find((c) => c !== readerConn)!;
    expect(readerConn.metadata.get('persist-pubsub-caller-id')).toEqual(['reader-1']);
    expect(readerConn.metadata.get('persist-pubsub-extensions')).toEqual(['1']);
    expect(readerConn.metadata.get('authorization')).toEqual([]);
    expect(writerConn.metadata.get('authorization')).toEqual(['Bearer sekret']);
    const sub = readerConn.received.find((m) => m.message.case === 'subscribe');
    expect(sub?.message.value).toMatchObject({ shardId: S, resumeAfterSeqno: 41n });
    const push = writerConn.received.find((m) => m.message.case === 'pushDiff');
    expect(push?.timestamp).toBeDefined();
    expect(push?.message.case === 'pushDiff' && push.message.value.originTimestamp).toMatchObject({
      secs: 1_700_000_000n,
      nanos: 123_500_000,
    });

    const gap = create(ProtoPubSubMessageSchema, {
      message: {
        case: 'gap',
        value: { shardId: S, reason: ProtoGapReason.SLOW_CONSUMER, fromSeqno: 43n, dropped: 2n },
      },
    });
    readerConn.send(Buffer.from(toBinary(ProtoPubSubMessageSchema, gap)));
    expect(await nextOf(events, 'gap')).toEqual({
      kind: 'gap',
      shardId: S,
      reason: 'slow_consumer',
      fromSeqno: 43n,
    });
    // Garbage from the broker is counted, never a crash; the stream stays up.
    readerConn.send(Buffer.from([0xff, 0xff, 0xff]));
    writer.push(S, 43n, new Uint8Array([4]));
    expect(await nextOf(events, 'diff')).toMatchObject({ seqno: 43n });
  });

  it('does not block the caller when the broker is down, and connects when it appears', async () => {
    const probe = await startTinyBroker();
    const port = probe.port;
    await probe.close();
    const flags = createFlags({ persist_pubsub_connect_max_backoff_ms: 50 });
    const t0 = performance.now();
    const client: PubSubClient = createGrpcPubSubClient({ url: `grpc://127.0.0.1:${port}`, flags });
    const token = client.subscribe(S);
    // Returned at once (synchronously), long before a connect attempt could time out (5 s).
    expect(token.released).toBe(false);
    expect(client.status.state).not.toBe('connected');
    expect(performance.now() - t0).toBeLessThan(1000);
    cleanup.push(() => client.close());
    await until(() => client.status.state === 'backoff');
    const tiny = await startTinyBroker(port);
    cleanup.push(() => tiny.close());
    await until(() => tiny.calls.some((c) => c.subs.has(S)));
    expect(client.status.state).toBe('connected');
  });

  it('a connect attempt that hangs (TCP accepted, no HTTP/2) times out and backs off', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((sock) => sockets.push(sock));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cleanup.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          silent.close(() => r());
        }),
    );
    const port = (silent.address() as AddressInfo).port;
    const registry = new Registry();
    const client = createGrpcPubSubClient({
      url: `grpc://127.0.0.1:${port}`,
      registry,
      flags: createFlags({
        persist_pubsub_connect_attempt_timeout_ms: 100,
        persist_pubsub_connect_max_backoff_ms: 20,
      }),
    });
    cleanup.push(() => client.close());
    let error = '';
    for await (const st of client.statusChanges()) {
      if (st.state === 'backoff') {
        error = st.error;
        break;
      }
    }
    expect(error).toMatch(/timed out after 100 ms/);
    const attempts = await registry
      .getSingleMetric('persist_pubsub_client_connect_attempts_total')
      ?.get();
    expect(attempts?.values[0]?.value).toBeGreaterThanOrEqual(1);
  });

  it('rejects bad addresses and options with the field named', () => {
    expect(() => createGrpcPubSubClient({ url: 'http://x:1' })).toThrow(
      /grpc:\/\/, grpcs:\/\/ or unix:/,
    );
    expect(() => createGrpcPubSubClient({ url: 'grpc://x' })).toThrow(/host and a port/);
    expect(() => createGrpcPubSubClient({ url: 'grpc://x:1', tls: { ca: 'x' } })).toThrow(/grpcs/);
    expect(() => createGrpcPubSubClient({ url: 'grpc://x:1', callerId: 'é' })).toThrow(/callerId/);
  });
});
