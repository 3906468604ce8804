import { createServer, type Http2Server, connect as h2connect } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { encodePushDiff, frameMessage, PUBSUB_METHOD_PATH } from '../protocol/index.js';
import { createFakeClock } from '../util/index.js';
import { createTestOpener, setupFanout, silentLog } from './fanout.test-support.js';
import { GrpcStatus } from './grpc-status.js';
import { DEFAULT_LIMITS } from './options.js';
import { createPubSubStreams } from './pubsub-stream.js';

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

async function setup(o: { refuse?: boolean; token?: string } = {}) {
  const f = setupFanout();
  const opener = createTestOpener(
    f.core,
    o.refuse === true
      ? { reason: 'draining', status: { code: GrpcStatus.UNAVAILABLE, message: 'draining' } }
      : undefined,
  );
  const streams = createPubSubStreams({
    fan: f.core,
    opener,
    metrics: f.metrics,
    limits: { ...DEFAULT_LIMITS, maxShardIdBytes: 16 },
    log: silentLog,
    clock: createFakeClock(),
    authorized: (h) => o.token === undefined || h.authorization === `Bearer ${o.token}`,
  });
  const server: Http2Server = createServer();
  server.on('stream', (s, h) => streams.handle(s, h));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  const session = h2connect(`http://127.0.0.1:${port}`);
  cleanup.push(() => {
    session.destroy();
    server.close();
  });
  const call = (headers: Record<string, string> = {}) => {
    const stream = session.request({
      ':method': 'POST',
      ':path': PUBSUB_METHOD_PATH,
      'content-type': 'application/grpc',
      ...headers,
    });
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => {});
    const status = new Promise<{ code: string | undefined; message: string | undefined }>((r) => {
      const done = (h: Record<string, unknown>) =>
        h['grpc-status'] !== undefined &&
        r({ code: String(h['grpc-status']), message: h['grpc-message'] as string | undefined });
      stream.on('response', done);
      stream.on('trailers', done);
      stream.on('close', () => r({ code: undefined, message: undefined }));
    });
    return { stream, chunks, status, bytes: () => Buffer.concat(chunks) };
  };
  return { ...f, call };
}

const subscribe = (id: string) =>
  frameMessage(
    Buffer.concat([Buffer.from([0x1a, id.length + 2, 0x0a, id.length]), Buffer.from(id)]),
  );
const push = (id: string, seqno: bigint) => {
  const pd = encodePushDiff(id, seqno, Uint8Array.of(9), undefined);
  return frameMessage(Buffer.concat([Buffer.from([0x12, pd.length]), pd]));
};
const turn = () => new Promise((r) => setImmediate(r));
async function until(check: () => boolean) {
  while (!check()) await new Promise((r) => setTimeout(r, 2));
}

describe('PubSub stream', () => {
  it('subscribes and forwards a push to another call, not back to its sender', async () => {
    const { call, core } = await setup();
    const sub = call();
    const pub = call();
    sub.stream.write(subscribe('s1'));
    pub.stream.write(subscribe('s1'));
    await until(() => core.table.subscribers('s1')?.size === 2);
    pub.stream.write(push('s1', 3n));
    await until(() => sub.chunks.length > 0);
    await turn();
    // One forwarded frame: a broker timestamp, then the publisher's push_diff verbatim.
    const pd = encodePushDiff('s1', 3n, Uint8Array.of(9), undefined);
    const got = sub.bytes();
    expect(got.subarray(got.length - pd.length).equals(Buffer.from(pd))).toBe(true);
    expect(pub.chunks).toHaveLength(0);
    sub.stream.end();
    expect((await sub.status).code).toBe('0');
  });

  it('ends the call with INVALID_ARGUMENT on a bad shard id or malformed bytes', async () => {
    const { call } = await setup();
    const a = call();
    a.stream.write(subscribe('has space'));
    expect((await a.status).code).toBe(String(GrpcStatus.INVALID_ARGUMENT));
    const b = call();
    b.stream.write(frameMessage(Buffer.from([0xff, 0xff, 0xff])));
    expect((await b.status).code).toBe(String(GrpcStatus.INVALID_ARGUMENT));
  });

  it('refuses with a trailers-only status: wrong token, not serving', async () => {
    expect((await (await setup({ token: 't' })).call().status).code).toBe(
      String(GrpcStatus.UNAUTHENTICATED),
    );
    const ok = (await setup({ token: 't' })).call({ authorization: 'Bearer t' });
    ok.stream.end();
    expect((await ok.status).code).toBe('0');
    expect((await (await setup({ refuse: true })).call().status).code).toBe(
      String(GrpcStatus.UNAVAILABLE),
    );
  });
});
