/**
 * The NATS transport with an injected nats.js `connect` (no network): connection options,
 * subject mapping, origin filtering, malformed input, close semantics and failed attempts.
 * The real-server scenarios are in `test/nats-transport.test.ts`.
 */
import type { Msg, NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { ORIGIN_HEADER, shardSubject } from '../protocol/index.js';
import { createNatsTransport } from './nats-transport.js';
import type { InboundMessage } from './transport.js';

type Callback = (err: Error | null, msg: Msg) => void;

/** Just enough of a NatsConnection for the transport. */
function fakeNats() {
  const subs = new Map<string, Callback>();
  const published: { subject: string; data: Uint8Array; origin: string | undefined }[] = [];
  let closeResolve!: (err: Error | undefined) => void;
  const closedP = new Promise<Error | undefined>((r) => {
    closeResolve = r;
  });
  let closes = 0;
  const nc = {
    subscribe(subject: string, opts: { callback: Callback }) {
      subs.set(subject, opts.callback);
      return { unsubscribe: () => subs.delete(subject) };
    },
    publish(subject: string, data: Uint8Array, opts?: { headers?: { get(k: string): string } }) {
      if (data.byteLength > 1000) throw new Error('MAX_PAYLOAD_EXCEEDED');
      published.push({ subject, data, origin: opts?.headers?.get(ORIGIN_HEADER) });
    },
    closed: () => closedP,
    close: async () => {
      closes++;
      closeResolve(undefined);
    },
  };
  const deliver = (subject: string, data: Uint8Array, origin?: string) =>
    subs.get(subject)?.(null, {
      subject,
      data,
      headers:
        origin === undefined
          ? undefined
          : { get: (k: string) => (k === ORIGIN_HEADER ? origin : '') },
    } as unknown as Msg);
  return {
    nc: nc as unknown as NatsConnection,
    subs,
    published,
    deliver,
    serverClose: (err?: Error) => closeResolve(err),
    closes: () => closes,
  };
}

describe('NATS transport (injected connect)', () => {
  it('connects with noEcho and no nats.js reconnect, and maps shards to subjects', async () => {
    const f = fakeNats();
    let seen: NodeConnectionOptions | undefined;
    const t = createNatsTransport({
      url: 'nats://h1:4222,nats://h2:4222',
      subjectPrefix: 'pp.t',
      callerId: 'me',
      connect: async (o) => {
        seen = o;
        return f.nc;
      },
    });
    const got: InboundMessage[] = [];
    const conn = await t.connect({
      signal: new AbortController().signal,
      onMessage: (m) => got.push(m),
      onClose: () => {},
    });
    expect(seen).toMatchObject({
      servers: ['nats://h1:4222', 'nats://h2:4222'],
      noEcho: true,
      reconnect: false,
      name: 'persist-pubsub-me',
    });
    // NATS subject syntax inside a valid shard id (a space is not one: src/protocol's rule).
    const S = 'a.b*>';
    const subject = shardSubject('pp.t', S);
    expect(conn.subscribe(S, 5n)).toBe(subject.length);
    expect(conn.subscribe(S, undefined)).toBe(subject.length); // idempotent
    expect([...f.subs.keys()]).toEqual([subject]);

    // Own publish (origin header) is dropped even if the server echoed it.
    expect(conn.push(S, 3n, new Uint8Array([1]), 1000)).toBeGreaterThan(0);
    const own = f.published[0]!;
    expect(own.subject).toBe(subject);
    f.deliver(subject, own.data, own.origin);
    expect(got).toEqual([]);
    // Another origin's copy of the same bytes is delivered.
    f.deliver(subject, own.data, 'someone-else');
    expect(got).toMatchObject([{ kind: 'diff', shardId: S, seqno: 3n, originTimestampMs: 1000 }]);
    // Garbage and an envelope naming another shard are 'unknown', never a throw.
    f.deliver(subject, new Uint8Array([0xff, 0xff]));
    conn.push('other', 1n, new Uint8Array(), 0);
    f.deliver(subject, f.published[1]!.data, 'x');
    expect(got.slice(1).map((m) => m.kind)).toEqual(['unknown', 'unknown']);
    // Over max_payload: the push reports false.
    expect(conn.push(S, 4n, new Uint8Array(2000), 0)).toBe(false);

    expect(conn.unsubscribe(S)).toBe(S.length);
    expect(f.subs.size).toBe(0);
    conn.close();
    conn.close();
    expect(f.closes()).toBe(1);
    expect(conn.push(S, 5n, new Uint8Array(), 0)).toBe(false);
    expect(conn.subscribe(S, undefined)).toBe(false);
  });

  it('reports a server-side close once through onClose; not after close()', async () => {
    const f = fakeNats();
    const t = createNatsTransport({ url: 'nats://h:1', connect: async () => f.nc });
    const closes: (Error | undefined)[] = [];
    await t.connect({
      signal: new AbortController().signal,
      onMessage: () => {},
      onClose: (e) => closes.push(e),
    });
    f.serverClose(new Error('stale connection'));
    await new Promise((r) => setImmediate(r));
    expect(closes).toHaveLength(1);
    expect(closes[0]).toMatchObject({ code: 'unavailable' });
    expect(closes[0]?.message).toMatch(/stale connection/);

    const g = fakeNats();
    const t2 = createNatsTransport({ url: 'nats://h:1', connect: async () => g.nc });
    const closes2: unknown[] = [];
    const c2 = await t2.connect({
      signal: new AbortController().signal,
      onMessage: () => {},
      onClose: (e) => closes2.push(e),
    });
    c2.close();
    await new Promise((r) => setImmediate(r));
    expect(closes2).toEqual([]);
  });

  it('fails an attempt as unavailable; an aborted attempt closes a late connection', async () => {
    const t = createNatsTransport({
      url: 'nats://h:1',
      connect: async () => {
        throw new Error('ECONNREFUSED');
      },
    });
    await expect(
      t.connect({ signal: new AbortController().signal, onMessage: () => {}, onClose: () => {} }),
    ).rejects.toMatchObject({ code: 'unavailable' });

    const f = fakeNats();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const slow = createNatsTransport({
      url: 'nats://h:1',
      connect: async () => {
        await gate;
        return f.nc;
      },
    });
    const ac = new AbortController();
    const p = slow.connect({ signal: ac.signal, onMessage: () => {}, onClose: () => {} });
    ac.abort(new Error('attempt timed out'));
    await expect(p).rejects.toThrow(/attempt timed out/);
    release();
    await new Promise((r) => setTimeout(r, 10));
    expect(f.closes()).toBe(1);
  });
});
