import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createFakeClock, sumMetric } from '../util/index.js';
import { type BrokerSetMode, createBrokerSetPubSubClient } from './broker-set.js';
import type { PubSubEvent } from './pubsub-client.js';
import { createRendezvous } from './rendezvous.js';
import type { ConnectOptions, InboundMessage, PubSubTransport } from './transport.js';

/** Fake brokers by URL: what each was sent, their live connections, failures on demand. */
function fakeBrokers() {
  const sent: string[] = [];
  const live = new Map<string, ConnectOptions>();
  const down = new Set<string>();
  const transport = (url: string): PubSubTransport => ({
    kind: 'grpc',
    async connect(opts) {
      opts.signal.throwIfAborted();
      if (down.has(url)) throw new Error(`${url} is down`);
      live.set(url, opts);
      const send = (what: string) => (live.get(url) === opts ? sent.push(`${url} ${what}`) : false);
      return {
        subscribe: (s, r) => send(`sub ${s} ${r ?? '-'}`) && 10,
        unsubscribe: (s) => send(`unsub ${s}`) && 10,
        push: (s, n) => send(`push ${s} ${n}`) && 20,
        bufferedBytes: () => 0,
        close: () => {
          if (live.get(url) === opts) live.delete(url);
        },
      };
    },
  });
  return {
    transport,
    sent,
    live,
    /** Kills a broker: its stream ends, and connect attempts fail until `start`. */
    kill(url: string) {
      down.add(url);
      const opts = live.get(url);
      live.delete(url);
      opts?.onClose(new Error('killed'));
    },
    start(url: string) {
      down.delete(url);
    },
    deliver(url: string, msg: InboundMessage) {
      live.get(url)?.onMessage(msg);
    },
    /** The lines sent that contain `part`, removed from the record. */
    take(part: string): string[] {
      const mine = sent.filter((l) => l.includes(part));
      const rest = sent.filter((l) => !l.includes(part));
      sent.length = 0;
      sent.push(...rest);
      return mine;
    },
  };
}

const A = 'grpc://127.0.0.1:7001';
const B = 'grpc://127.0.0.1:7002';

function diff(shardId: string, seqno: bigint): InboundMessage {
  return {
    kind: 'diff',
    shardId,
    seqno,
    diff: new Uint8Array([1]),
    originTimestampMs: undefined,
    brokerTimestampMs: undefined,
    bytes: 10,
  };
}

function setup(mode: BrokerSetMode, brokers = [A, B], resolve?: (h: string) => Promise<string[]>) {
  const f = fakeBrokers();
  const clock = createFakeClock();
  const registry = new Registry();
  const client = createBrokerSetPubSubClient({
    brokers,
    mode,
    transport: f.transport,
    resolve,
    clock,
    registry,
    random: () => 0,
    handoverGraceMs: 1000,
  });
  const received: PubSubEvent[] = [];
  const pump = (async () => {
    for await (const batch of client.eventBatches()) received.push(...batch);
  })();
  const metric = (name: string, labels: Record<string, string> = {}) =>
    sumMetric(registry, name, (l) => Object.entries(labels).every(([k, v]) => l[k] === v));
  return { f, clock, client, received, pump, metric };
}

describe('createBrokerSetPubSubClient, replicated', () => {
  it('subscribes and pushes on every broker, passes the first copy of a diff, counts the rest', async () => {
    const { f, clock, client, received, metric } = setup('replicated');
    await clock.advance(0);
    expect(client.status).toMatchObject({ state: 'connected', connections: 2 });
    f.take('');
    const token = client.subscribe('s1');
    expect(f.take('sub').sort()).toEqual([`${A} sub s1 -`, `${B} sub s1 -`]);
    expect(client.push('s1', 1n, new Uint8Array([1]), 5)).toBe(true);
    expect(f.take('push').sort()).toEqual([`${A} push s1 1`, `${B} push s1 1`]);

    // Each broker's copies in order; across brokers in any order (B's 3 before A's 2).
    f.deliver(A, diff('s1', 1n));
    await clock.advance(0);
    f.deliver(B, diff('s1', 1n));
    f.deliver(B, diff('s1', 3n));
    await clock.advance(0);
    f.deliver(A, diff('s1', 2n));
    f.deliver(A, diff('s1', 3n));
    await clock.advance(0);
    f.deliver(B, diff('s1', 2n));
    await clock.advance(0);
    const diffs = received
      .filter((e) => e.kind === 'diff')
      .map((e) => e.kind === 'diff' && e.seqno);
    expect(diffs).toEqual([1n, 3n, 2n]);
    expect(await metric('persist_pubsub_client_duplicate_diffs_total')).toBe(3);

    token.release();
    expect(f.take('unsub').sort()).toEqual([`${A} unsub s1`, `${B} unsub s1`]);
    await client.close();
  });

  it('is up while any broker is; per broker status and gauges', async () => {
    const { f, clock, client, metric } = setup('replicated');
    await clock.advance(0);
    expect(await metric('persist_pubsub_client_connected')).toBe(1);
    f.kill(A);
    await clock.advance(0);
    expect(client.status).toMatchObject({ state: 'connected', connections: 1 });
    expect(client.brokers().map((b) => [b.url, b.status.state])).toEqual([
      [A, 'backoff'],
      [B, 'connected'],
    ]);
    expect(await metric('persist_pubsub_client_broker_connected', { broker: A })).toBe(0);
    expect(await metric('persist_pubsub_client_broker_connected', { broker: B })).toBe(1);
    f.kill(B);
    await clock.advance(0);
    expect(client.status.state).toBe('backoff');
    expect(await metric('persist_pubsub_client_connected')).toBe(0);
    f.start(A);
    await clock.advance(5000);
    expect(client.status).toMatchObject({ state: 'connected', connections: 1 });
    expect(await metric('persist_pubsub_client_connected')).toBe(1);
    await client.close();
    expect(client.status.state).toBe('closed');
  });

  it('a broker that returns while another carried the shard costs no catch-up; with none up it does', async () => {
    const { f, clock, client, received, metric } = setup('replicated');
    await clock.advance(0);
    client.subscribe('s1', { resumeAfterSeqno: 4n });
    await clock.advance(0);
    received.length = 0;
    f.take('');

    f.kill(A);
    await clock.advance(0);
    f.start(A);
    // The reconnect backoff: 5000 ms jittered to [2500, 5000], here 2500.
    await clock.advance(2500);
    expect(f.take(`${A} sub`)).toEqual([`${A} sub s1 4`]);
    // The restarted broker has no resume ring: it answers the resume with a gap notice.
    f.deliver(A, {
      kind: 'gap',
      shardId: 's1',
      reason: 'resume_unavailable',
      fromSeqno: 5n,
      bytes: 10,
    });
    await clock.advance(0);
    expect(received).toEqual([]);
    expect(
      await metric('persist_pubsub_client_catch_ups_covered_total', { reason: 'resync' }),
    ).toBe(1);
    expect(
      await metric('persist_pubsub_client_catch_ups_covered_total', {
        reason: 'resume_unavailable',
      }),
    ).toBe(1);

    // Both go down: what returns first has been carried by nobody.
    f.kill(A);
    f.kill(B);
    await clock.advance(0);
    f.start(B);
    await clock.advance(5000);
    expect(received).toEqual([{ kind: 'resync', shardIds: ['s1'], reconnect: true }]);
    // A returns later, after B asked for the read: covered.
    received.length = 0;
    f.start(A);
    await clock.advance(5000);
    expect(received).toEqual([]);
    // A slow-consumer gap is another matter: passed on.
    f.deliver(A, { kind: 'gap', shardId: 's1', reason: 'slow_consumer', fromSeqno: 9n, bytes: 10 });
    await clock.advance(0);
    expect(received.map((e) => e.kind)).toEqual(['gap']);
    await client.close();
  });

  it('a read asked for while a broker was down does not cover what it missed afterwards', async () => {
    const { f, clock, client, received } = setup('replicated');
    await clock.advance(0);
    client.subscribe('s1', { resumeAfterSeqno: 1n });
    await clock.advance(0);
    f.kill(A);
    await clock.advance(0);
    // B asks for a read (a slow-consumer gap), then B dies too: nobody carries s1 from here.
    f.deliver(B, { kind: 'gap', shardId: 's1', reason: 'slow_consumer', fromSeqno: 2n, bytes: 1 });
    await clock.advance(0);
    f.kill(B);
    await clock.advance(0);
    received.length = 0;
    f.start(A);
    await clock.advance(2500);
    expect(received).toEqual([{ kind: 'resync', shardIds: ['s1'], reconnect: true }]);
    await client.close();
  });

  it('a host name is one broker per address, re-resolved when a stream fails', async () => {
    let answer = ['10.0.0.1', '10.0.0.2'];
    const asked: string[] = [];
    const resolve = async (host: string) => {
      asked.push(host);
      return answer;
    };
    const { f, clock, client } = setup('replicated', ['grpc://brokers.test:6879'], resolve);
    await clock.advance(0);
    expect(client.brokers().map((b) => [b.url, b.configured, b.status.state])).toEqual([
      ['grpc://10.0.0.1:6879', 'grpc://brokers.test:6879', 'connected'],
      ['grpc://10.0.0.2:6879', 'grpc://brokers.test:6879', 'connected'],
    ]);
    client.subscribe('s1');
    // The pod at 10.0.0.2 is replaced by one at 10.0.0.3.
    answer = ['10.0.0.1', '10.0.0.3'];
    f.kill('grpc://10.0.0.2:6879');
    await clock.advance(0);
    expect(asked).toEqual(['brokers.test', 'brokers.test']);
    expect(client.brokers().map((b) => b.url)).toEqual([
      'grpc://10.0.0.1:6879',
      'grpc://10.0.0.3:6879',
    ]);
    expect(f.take('grpc://10.0.0.3:6879 sub')).toEqual(['grpc://10.0.0.3:6879 sub s1 -']);
    // A failed or empty answer keeps the brokers there are.
    answer = [];
    f.kill('grpc://10.0.0.3:6879');
    await clock.advance(0);
    expect(client.brokers()).toHaveLength(2);
    await client.close();
  });

  it('a resolved address keeps its name for TLS; an IP given as such has none', async () => {
    const made: [string, string | undefined][] = [];
    const f = fakeBrokers();
    const client = createBrokerSetPubSubClient({
      brokers: ['grpcs://brokers.test:6879', 'grpcs://[::1]:7000'],
      transport: (url, serverName) => {
        made.push([url, serverName]);
        return f.transport(url);
      },
      resolve: async () => ['10.0.0.1', 'fd00::2'],
      clock: createFakeClock(),
    });
    await new Promise((r) => setImmediate(r));
    expect(made.sort()).toEqual([
      ['grpcs://10.0.0.1:6879', 'brokers.test'],
      ['grpcs://[::1]:7000', undefined],
      ['grpcs://[fd00::2]:6879', 'brokers.test'],
    ]);
    await client.close();
  });

  it('a Unix socket is one broker, never resolved, named as configured', async () => {
    const made: [string, string | undefined][] = [];
    const resolved: string[] = [];
    const f = fakeBrokers();
    const client = createBrokerSetPubSubClient({
      brokers: ['unix:/run/a.sock', 'unix:///run/b.sock'],
      transport: (url, serverName) => {
        made.push([url, serverName]);
        return f.transport(url);
      },
      resolve: async (host) => {
        resolved.push(host);
        return [];
      },
      clock: createFakeClock(),
    });
    await new Promise((r) => setImmediate(r));
    expect(made.sort()).toEqual([
      ['unix:///run/b.sock', undefined],
      ['unix:/run/a.sock', undefined],
    ]);
    expect(resolved).toEqual([]);
    await client.close();
  });

  it('localhost is one host, not a broker per address family', async () => {
    const { clock, client } = setup('replicated', ['grpc://localhost:6879'], async () => [
      '::1',
      '127.0.0.1',
    ]);
    await clock.advance(0);
    expect(client.brokers().map((b) => b.url)).toEqual(['grpc://[::1]:6879']);
    await client.close();
  });

  it('rejects an empty list and an unknown mode', () => {
    const transport = fakeBrokers().transport;
    expect(() => createBrokerSetPubSubClient({ brokers: [], transport })).toThrow(/empty/);
    expect(() =>
      createBrokerSetPubSubClient({
        brokers: [A],
        transport,
        mode: 'both' as BrokerSetMode,
      }),
    ).toThrow(/mode/);
    expect(() => createBrokerSetPubSubClient({ brokers: ['http://x:1'], transport })).toThrow(
      /scheme/,
    );
  });
});

describe('createBrokerSetPubSubClient, sharded', () => {
  const shards = Array.from({ length: 40 }, (_, i) => `s${i}`);
  const ranking = createRendezvous([A, B]);
  const onA = shards.filter((s) => ranking.owner(s) === A);
  const onB = shards.filter((s) => ranking.owner(s) === B);

  it('subscribes and pushes each shard on its rendezvous broker only', async () => {
    const { f, clock, client } = setup('sharded');
    await clock.advance(0);
    f.take('');
    for (const s of shards) client.subscribe(s);
    expect(onA.length).toBeGreaterThan(5);
    expect(onB.length).toBeGreaterThan(5);
    expect(f.take(`${A} sub`)).toEqual(onA.map((s) => `${A} sub ${s} -`));
    expect(f.take(`${B} sub`)).toEqual(onB.map((s) => `${B} sub ${s} -`));
    for (const s of shards) client.push(s, 1n, new Uint8Array([1]));
    const pushes = f.take('push');
    expect(pushes.filter((l) => l.startsWith(A))).toEqual(onA.map((s) => `${A} push ${s} 1`));
    expect(pushes.filter((l) => l.startsWith(B))).toEqual(onB.map((s) => `${B} push ${s} 1`));
    for (const s of shards) expect(client.brokerOf(s)).toBe(ranking.owner(s));
    await client.close();
  });

  it("a dead broker's shards move to the other with a catch-up for them only, and move back make-before-break", async () => {
    const { f, clock, client, received } = setup('sharded');
    await clock.advance(0);
    for (const s of shards) client.subscribe(s, { resumeAfterSeqno: 1n });
    await clock.advance(0);
    received.length = 0;
    f.take('');

    f.kill(A);
    await clock.advance(0);
    expect(f.take(`${B} sub`)).toEqual(onA.map((s) => `${B} sub ${s} 1`));
    expect(received).toEqual([{ kind: 'resync', shardIds: onA, reconnect: true }]);
    // B had no ring for them: its resume gaps are covered by that read.
    for (const s of onA) {
      f.deliver(B, {
        kind: 'gap',
        shardId: s,
        reason: 'resume_unavailable',
        fromSeqno: 2n,
        bytes: 1,
      });
    }
    await clock.advance(0);
    expect(received).toHaveLength(1);
    for (const s of onA) client.push(s, 2n, new Uint8Array([1]));
    expect(f.take('push')).toEqual(onA.map((s) => `${B} push ${s} 2`));

    received.length = 0;
    f.start(A);
    await clock.advance(2500);
    // Back on A at once; B keeps them through the grace, then lets go; no catch-up.
    expect(f.take(`${A} sub`)).toEqual(onA.map((s) => `${A} sub ${s} 1`));
    // Pushed on both through the grace: a reader still only on B gets it there.
    for (const s of onA) client.push(s, 3n, new Uint8Array([1]));
    expect(f.take('push').sort()).toEqual(
      onA.flatMap((s) => [`${A} push ${s} 3`, `${B} push ${s} 3`]).sort(),
    );
    f.deliver(B, diff(onA[0] as string, 3n));
    f.deliver(A, diff(onA[0] as string, 3n));
    await clock.advance(999);
    expect(f.take(`${B} unsub`)).toEqual([]);
    await clock.advance(1);
    expect(f.take(`${B} unsub`)).toEqual(onA.map((s) => `${B} unsub ${s}`));
    for (const s of onA) client.push(s, 4n, new Uint8Array([1]));
    expect(f.take('push')).toEqual(onA.map((s) => `${A} push ${s} 4`));
    expect(received.map((e) => e.kind)).toEqual(['diff']);
    await client.close();
  });

  it('a broker that is no longer resolved hands its shards over like a dead one', async () => {
    let answer = ['10.0.0.1', '10.0.0.2'];
    const { f, clock, client, received } = setup(
      'sharded',
      ['grpc://brokers.test:6879'],
      async () => answer,
    );
    await clock.advance(0);
    const names = ['grpc://10.0.0.1:6879', 'grpc://10.0.0.2:6879'];
    const r = createRendezvous(names);
    for (const s of shards) client.subscribe(s);
    await clock.advance(0);
    received.length = 0;
    const first = shards.filter((s) => r.owner(s) === names[0]);
    // 10.0.0.1's stream fails; the answer no longer lists 10.0.0.2 (its pod was replaced).
    answer = ['10.0.0.1'];
    f.kill(names[0] as string);
    await clock.advance(0);
    expect(client.brokers().map((b) => b.url)).toEqual([names[0]]);
    // 10.0.0.1's shards moved to 10.0.0.2 (a read), which then left: nobody carries any shard.
    expect(received).toEqual([{ kind: 'resync', shardIds: first, reconnect: true }]);
    received.length = 0;
    f.start(names[0] as string);
    await clock.advance(2500);
    for (const s of shards) expect(client.brokerOf(s)).toBe(names[0]);
    // Back: every shard read once, as after any outage that nobody covered.
    const fetched = received.flatMap((e) => (e.kind === 'resync' ? e.shardIds : []));
    expect([...fetched].sort()).toEqual([...shards].sort());
    await client.close();
  });
});
