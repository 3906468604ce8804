import { connect as h2connect } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  decodeMessage,
  encodePushDiff,
  frameMessage,
  PUBSUB_METHOD_PATH,
  type PubSubMessage,
} from '../protocol/index.js';
import { createFakeClock } from '../util/index.js';
import { createBearerAuth } from './bearer-auth.js';
import { TURN_BUDGET_DELIVERIES } from './fanout.js';
import { createTestOpener, setupFanout, silentLog } from './fanout.test-support.js';
import { GrpcStatus } from './grpc-status.js';
import { afterH2Receive } from './node-h2-client.test-support.js';
import { createNodeH2Server } from './node-h2-server.js';
import { DEFAULT_LIMITS } from './options.js';
import { createOwnH2Server } from './own-h2-server.js';
import { createPubSubStreams } from './pubsub-stream.js';
import type { H2ServerEvents, Http2ServerKind } from './server-stream.js';
import { createStreamScopes } from './stream-scopes.js';
import { compileTokenGrants, type TokenGrant } from './token-scopes.js';
import type { BrokerLimits } from './types.js';

const cleanup: Array<() => void> = [];
afterEach(async () => {
  // Not in the continuation of a call's trailers: see node-h2-client.test-support.ts.
  await afterH2Receive();
  for (const f of cleanup.splice(0)) f();
});

/** The HTTP/2 server the suite runs on (each suite below runs on both). */
let kind: Http2ServerKind = 'own';

async function setup(
  o: {
    refuse?: boolean;
    token?: string;
    tokens?: TokenGrant[];
    /** The receive windows (stream and connection), in bytes. @default 65,535 */
    windowBytes?: number;
    limits?: Partial<BrokerLimits>;
  } = {},
) {
  const f = setupFanout(o.limits);
  /** Reads after which the `own` server stopped reading for the turn. */
  const pauses = { n: 0 };
  const opener = createTestOpener(
    f.core,
    o.refuse === true
      ? { reason: 'draining', status: { code: GrpcStatus.UNAVAILABLE, message: 'draining' } }
      : undefined,
  );
  const auth = createBearerAuth({
    token: o.token,
    tokens: o.tokens === undefined ? undefined : compileTokenGrants(o.tokens),
  });
  const scopes = createStreamScopes({ fan: f.core, metrics: f.metrics, log: silentLog });
  const streams = createPubSubStreams({
    fan: f.core,
    opener,
    metrics: f.metrics,
    limits: { ...DEFAULT_LIMITS, maxShardIdBytes: 16 },
    log: silentLog,
    clock: createFakeClock(),
    auth,
    scopes,
  });
  const reload = (grants: TokenGrant[]) => {
    const table = compileTokenGrants(grants);
    auth.setTable(table);
    return scopes.reload(table);
  };
  const settings = {
    streamWindowBytes: o.windowBytes ?? 65_535,
    connectionWindowBytes: o.windowBytes ?? 65_535,
    maxConcurrentStreams: 100,
  };
  const events: H2ServerEvents = {
    onConnection: () => {},
    onSession: () => {},
    onStream: (s) => streams.handle(s, s.headers),
  };
  const server =
    kind === 'own'
      ? createOwnH2Server(settings, events, silentLog, createFakeClock(), () => {
          const over = f.core.overBudget();
          if (over) pauses.n++;
          return over;
        })
      : createNodeH2Server(settings, undefined, 1000, events, silentLog);
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
  return { ...f, call, reload, scopes, pauses };
}

/** The messages in a response body (whole gRPC frames). */
function messagesOf(bytes: Buffer): PubSubMessage[] {
  const out: PubSubMessage[] = [];
  for (let at = 0; at + 5 <= bytes.length; ) {
    const n = bytes.readUInt32BE(at + 1);
    const m = decodeMessage(bytes.subarray(at + 5, at + 5 + n));
    if (m.kind !== 'error') out.push(m as PubSubMessage);
    at += 5 + n;
  }
  return out;
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

describe.each(['own', 'node'] as const)('PubSub stream (%s HTTP/2 server)', (k) => {
  beforeEach(() => {
    kind = k;
  });

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

  it("reads a backlog a turn's budget at a time on its own server, every diff in order on both", async () => {
    const { call, core, metrics, pauses } = await setup({
      windowBytes: 8 << 20,
      limits: { maxQueueMessages: 16_384, maxQueueBytes: 64 << 20 },
    });
    const sub = call();
    const pub = call();
    sub.stream.write(subscribe('s1'));
    await until(() => core.table.subscribers('s1')?.size === 1);
    // Eight budgets' worth of 300-byte diffs, in one write that the window lets through.
    const n = 8 * TURN_BUDGET_DELIVERIES;
    const diff = new Uint8Array(300);
    const frames = Array.from({ length: n }, (_, i) => {
      const pd = encodePushDiff('s1', BigInt(i + 1), diff, undefined);
      // push_diff (field 2) with a two-byte length.
      const len = Buffer.from([0x12, (pd.length & 0x7f) | 0x80, pd.length >> 7]);
      return frameMessage(Buffer.concat([len, pd]));
    });
    pub.stream.write(Buffer.concat(frames));
    await until(() => messagesOf(sub.bytes()).length === n);
    const seqnos = messagesOf(sub.bytes()).map((m) => (m.kind === 'push' ? m.seqno : -1n));
    expect(seqnos).toEqual(Array.from({ length: n }, (_, i) => BigInt(i + 1)));
    expect(metrics.stats.drops.queue_full).toBe(0);
    // The own server stopped reading at a full budget and read on at the next turn;
    // node:http2 reads on its own schedule and has no such pause.
    expect(pauses.n > 0).toBe(k === 'own');
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

  it("ends the call on a push whose id the codec knows valid but is over the broker's limit", async () => {
    const { call, metrics } = await setup();
    // 21 characters, valid at the default limit (the codec's id cache says so), over 16.
    const id = 'sABCDEFGHIJKLMNOPQRST';
    expect(decodeMessage(push(id, 1n).subarray(5))).toMatchObject({ shardIdValid: true });
    const a = call();
    a.stream.write(push(id, 1n));
    expect((await a.status).code).toBe(String(GrpcStatus.INVALID_ARGUMENT));
    expect(metrics.stats.calls.push).toBe(0);
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

  describe('scoped tokens', () => {
    const tokens: TokenGrant[] = [
      { name: 'writer', token: 'tok-w', publish: ['s*'], subscribe: ['s*'] },
      { name: 'reader', token: 'tok-r', subscribe: ['s1', 'sa*'] },
    ];
    const ext = { 'persist-pubsub-extensions': '1' };
    const refusedTotal = async (registry: { metrics(): Promise<string> }, labels: string) =>
      Number(
        new RegExp(`^persist_pubsub_server_refused_total\\{${labels}\\} (\\d+)$`, 'm').exec(
          await registry.metrics(),
        )?.[1] ?? 0,
      );

    it('names the caller by its token, not its header; a wrong token is UNAUTHENTICATED', async () => {
      const { call, core } = await setup({ tokens });
      const r = call({ authorization: 'Bearer tok-r', 'persist-pubsub-caller-id': 'writer' });
      r.stream.write(subscribe('s1'));
      await until(() => core.table.subscribers('s1')?.size === 1);
      expect([...core.connections.values()].map((c) => c.callerId)).toEqual(['reader']);
      expect((await call({ authorization: 'Bearer tok-x' }).status).code).toBe(
        String(GrpcStatus.UNAUTHENTICATED),
      );
      expect((await call().status).code).toBe(String(GrpcStatus.UNAUTHENTICATED));
    });

    it('an extension client gets a refusal notice per refused call; its stream carries on', async () => {
      const { call, core, registry } = await setup({ tokens });
      const r = call({ authorization: 'Bearer tok-r', ...ext });
      const w = call({ authorization: 'Bearer tok-w' });
      r.stream.write(subscribe('s2')); // not in the reader's scope
      r.stream.write(subscribe('s1'));
      r.stream.write(push('s1', 1n)); // the reader may not publish
      await until(() => messagesOf(r.bytes()).length === 2);
      expect(core.table.subscribers('s1')?.size).toBe(1);
      expect(core.table.subscribers('s2')).toBeUndefined();
      expect(messagesOf(r.bytes())).toMatchObject([
        { kind: 'refused', shardId: 's2', reason: 'permission_denied', call: 'subscribe' },
        { kind: 'refused', shardId: 's1', reason: 'permission_denied', call: 'push' },
      ]);
      // The writer's push reaches the reader: the refusals cost nothing else.
      w.stream.write(push('s1', 2n));
      await until(() => messagesOf(r.bytes()).length === 3);
      expect(messagesOf(r.bytes())[2]).toMatchObject({ kind: 'push', shardId: 's1', seqno: 2n });
      expect(
        await refusedTotal(registry, 'caller_id="reader",call="push",reason="permission_denied"'),
      ).toBe(1);
      expect(
        await refusedTotal(
          registry,
          'caller_id="reader",call="subscribe",reason="permission_denied"',
        ),
      ).toBe(1);
    });

    it('a reference client: a refused push is dropped and counted, no notice, no stream end', async () => {
      const { call, core, registry } = await setup({ tokens });
      const r = call({ authorization: 'Bearer tok-r' });
      const other = call({ authorization: 'Bearer tok-w' });
      other.stream.write(subscribe('s1'));
      await until(() => core.table.subscribers('s1')?.size === 1);
      for (let i = 1; i <= 3; i++) r.stream.write(push('s1', BigInt(i)));
      await until(() => core.connections.size === 2);
      r.stream.write(subscribe('s1'));
      await until(() => core.table.subscribers('s1')?.size === 2);
      expect(
        await refusedTotal(registry, 'caller_id="reader",call="push",reason="permission_denied"'),
      ).toBe(3);
      await turn();
      expect(r.chunks).toHaveLength(0);
      expect(other.chunks).toHaveLength(0);
      r.stream.end();
      expect((await r.status).code).toBe('0');
    });

    it("a reload ends a revoked token's streams (UNAUTHENTICATED) and drops what a narrowed scope left", async () => {
      const { call, core, reload, scopes, registry } = await setup({ tokens });
      const r = call({ authorization: 'Bearer tok-r', ...ext });
      const w = call({ authorization: 'Bearer tok-w' });
      r.stream.write(subscribe('s1'));
      r.stream.write(subscribe('sa1'));
      w.stream.write(subscribe('s1'));
      await until(() => core.table.subscriptionCount === 3);
      expect(scopes.size).toBe(2);
      expect(
        reload([
          { name: 'reader', token: 'tok-r', subscribe: ['sa*'] },
          { name: 'writer2', token: 'tok-w2', publish: ['*'] },
        ]),
      ).toEqual({ revokedStreams: 1, droppedSubscriptions: 1 });
      expect(await w.status).toMatchObject({
        code: String(GrpcStatus.UNAUTHENTICATED),
        message: 'the bearer token was revoked',
      });
      expect(core.table.isSubscribed([...core.connections.values()][0]!, 's1')).toBe(false);
      await until(() => messagesOf(r.bytes()).length === 1);
      expect(messagesOf(r.bytes())[0]).toMatchObject({
        kind: 'refused',
        shardId: 's1',
        reason: 'permission_denied',
        call: 'subscribe',
      });
      // The new scope applies at once, the cached decisions gone.
      r.stream.write(subscribe('s1'));
      await until(() => messagesOf(r.bytes()).length === 2);
      expect(core.table.subscribers('sa1')?.size).toBe(1);
      expect(
        await refusedTotal(registry, 'caller_id="writer",call="stream",reason="revoked"'),
      ).toBe(1);
      expect(
        await refusedTotal(registry, 'caller_id="reader",call="subscribe",reason="revoked"'),
      ).toBe(1);
      // A new call with the revoked token is refused at admission.
      expect((await call({ authorization: 'Bearer tok-w' }).status).code).toBe(
        String(GrpcStatus.UNAUTHENTICATED),
      );
    });

    it('the single unscoped token works beside the table', async () => {
      const { call, core } = await setup({ token: 'plain', tokens });
      const p = call({ authorization: 'Bearer plain', 'persist-pubsub-caller-id': 'env-1' });
      p.stream.write(subscribe('zz'));
      await until(() => core.table.subscribers('zz')?.size === 1);
      expect([...core.connections.values()][0]!.callerId).toBe('env-1');
    });
  });
});
