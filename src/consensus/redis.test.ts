import { randomUUID } from 'node:crypto';
import { type AddressInfo, createServer } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireService, SERVICE_URLS } from '../../test/support/services.js';
import { createFakeClock } from '../util/index.js';
import { describeConformance } from './conformance.test-suite.js';
import { ConsensusError } from './errors.js';
import { openRedisConsensus, padSeqno, redisKeys, shardOfHeadKey } from './redis.js';
import type { Consensus } from './types.js';

const ok = await requireService('redis');
const URL = SERVICE_URLS.redis;
/** A key prefix per run, so parallel suites (and earlier runs) never share keys. */
const run = randomUUID().slice(0, 8);
const PREFIX = `pp-test-${run}:`;
const bytes = (s: string) => new TextEncoder().encode(s);

async function failure(p: Promise<unknown>): Promise<ConsensusError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ConsensusError);
    return err as ConsensusError;
  }
  throw new Error('expected a ConsensusError');
}

describe('redis key layout (no server)', () => {
  it('puts exactly the hex of the shard inside the hash tag, whatever the shard holds', () => {
    const hostile = ['s00000000-0000-0000-0000-000000000000', '{', '}', '}{', '{a}b', '{}', 'é🚀'];
    for (const shard of hostile) {
      const { log, head } = redisKeys('pp:', shard);
      const hex = Buffer.from(shard, 'utf8').toString('hex');
      for (const k of [log, head]) {
        // Redis hashes the text between the first '{' and the next '}'.
        const open = k.indexOf('{');
        const close = k.indexOf('}', open + 1);
        expect(k.slice(open + 1, close)).toBe(hex);
      }
      expect(shardOfHeadKey('pp:', head)).toBe(shard);
      expect(shardOfHeadKey('pp:', log)).toBeUndefined();
    }
  });

  it('ignores keys that are not head keys of this prefix or do not decode', () => {
    expect(shardOfHeadKey('pp:', 'pp:{zz}:head')).toBeUndefined();
    expect(shardOfHeadKey('pp:', 'pp:{abc}:head')).toBeUndefined();
    expect(shardOfHeadKey('pp:', 'pp:{ff}:head')).toBeUndefined(); // not UTF-8
    expect(shardOfHeadKey('pp:', 'other:{61}:head')).toBeUndefined();
    expect(shardOfHeadKey('pp:', 'pp:{61}:head')).toBe('a');
  });

  it('pads seqnos to 19 digits so bytewise order is numeric order', () => {
    const seqnos = [0n, 9n, 10n, 1n << 53n, (1n << 53n) + 1n, (1n << 63n) - 1n];
    const padded = seqnos.map(padSeqno);
    for (const p of padded) expect(p).toHaveLength(19);
    expect([...padded].reverse().sort()).toEqual(padded);
  });

  it('rejects bad options naming the field', async () => {
    const cases: [string, Parameters<typeof openRedisConsensus>[1], RegExp][] = [
      ['redis://127.0.0.1', { keyPrefix: 'a{b}' }, /keyPrefix/],
      ['redis://127.0.0.1', { commandTimeoutMs: 0 }, /commandTimeoutMs/],
      ['redis://127.0.0.1', { cluster: true, waitReplicas: 1 }, /waitReplicas/],
      ['redis://127.0.0.1?cluster=maybe', {}, /cluster/],
      ['redis://127.0.0.1?wait_replicas=-1', {}, /wait_replicas/],
      ['postgres://127.0.0.1', {}, /redis:\/\//],
      ['nope', {}, /url/],
    ];
    for (const [url, options, field] of cases) {
      const err = await failure(openRedisConsensus(url, options));
      expect(err.code).toBe('invalid_argument');
      expect(err.message).toMatch(field);
    }
  });

  it('reports a closed port as determinate unavailable', async () => {
    const err = await failure(
      openRedisConsensus('redis://127.0.0.1:1', { connectTimeoutMs: 2000 }),
    );
    expect(err.code).toBe('unavailable');
    expect(err.determinate).toBe(true);
  });
});

describe('redis open (no server)', () => {
  it('a server that accepts but never answers: open fails unavailable at connectTimeoutMs on its clock', async () => {
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as AddressInfo;
    const clock = createFakeClock();
    try {
      const opening = openRedisConsensus(`redis://127.0.0.1:${port}`, {
        clock,
        connectTimeoutMs: 5000,
      });
      let settled = false;
      opening.then(
        () => (settled = true),
        () => (settled = true),
      );
      await clock.advance(4999);
      expect(settled).toBe(false);
      await clock.advance(1);
      // Settled on the fake clock's time, not after 5 s of real time.
      await new Promise((r) => setImmediate(r));
      expect(settled).toBe(true);
      await expect(opening).rejects.toMatchObject({ code: 'unavailable' });
    } finally {
      silent.close();
    }
  });
});

describe.skipIf(!ok)('redis consensus', () => {
  let admin: Redis;
  beforeAll(() => {
    admin = new Redis(URL);
  });
  afterAll(async () => {
    // Delete this run's keys.
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000);
      if (keys.length > 0) await admin.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
    await admin.quit();
  });

  describeConformance('redis', () => openRedisConsensus(URL, { keyPrefix: PREFIX }));

  it('keeps every key of a hostile shard id in one slot and round-trips it', async () => {
    const c = await openRedisConsensus(URL, { keyPrefix: PREFIX });
    try {
      const shard = `${run}}{x}{'; redis.call('FLUSHALL') --`;
      expect(await c.compareAndSet(shard, null, { seqno: 7n, data: bytes('d') })).toBe('committed');
      const { log, head } = redisKeys(PREFIX, shard);
      expect(await admin.exists(log, head)).toBe(2);
      expect(await admin.get(head)).toBe(padSeqno(7n));
      expect(await c.head(shard)).toEqual({ seqno: 7n, data: bytes('d') });
    } finally {
      await c.close();
    }
  });

  it('lists every key with pages of 1 to 7, never above the page size', async () => {
    const prefix = `${PREFIX}small-${randomUUID().slice(0, 6)}:`;
    const c = await openRedisConsensus(URL, { keyPrefix: prefix });
    try {
      const mine = Array.from({ length: 60 }, (_, i) => `key ${i}`);
      for (const k of mine) await c.compareAndSet(k, null, { seqno: 0n, data: bytes(k) });
      for (const pageSize of [1, 2, 3, 7]) {
        const seen = new Set<string>();
        let pageToken: string | undefined;
        let pages = 0;
        do {
          const page = await c.listKeys({ pageSize, pageToken });
          expect(page.keys.length).toBeLessThanOrEqual(pageSize);
          for (const k of page.keys) seen.add(k);
          pageToken = page.nextPageToken;
          expect(++pages).toBeLessThan(10_000);
        } while (pageToken !== undefined);
        expect([...seen].sort()).toEqual([...mine].sort());
      }
      const forged = Buffer.from(JSON.stringify([5, '0'])).toString('base64url');
      expect((await failure(c.listKeys({ pageToken: forged }))).code).toBe('invalid_argument');
    } finally {
      await c.close();
    }
  });

  it('reports foreign data in its keys as data_loss', async () => {
    const c = await openRedisConsensus(URL, { keyPrefix: PREFIX });
    try {
      const wrongType = `wrongtype-${randomUUID()}`;
      await admin.set(redisKeys(PREFIX, wrongType).log, 'a string, not a sorted set');
      expect((await failure(c.head(wrongType))).code).toBe('data_loss');
      // Inside the scripts too: the CAS fails at its ZADD, before it writes anything.
      const cas = await failure(c.compareAndSet(wrongType, null, { seqno: 1n, data: bytes('x') }));
      expect(cas.code).toBe('data_loss');
      expect(cas.determinate).toBe(true);
      expect(await admin.exists(redisKeys(PREFIX, wrongType).head)).toBe(0);
      await admin.set(redisKeys(PREFIX, wrongType).head, padSeqno(1n));
      expect((await failure(c.truncate(wrongType, 1n))).code).toBe('data_loss');
      expect((await failure(c.scan(wrongType, 0n, 1))).code).toBe('data_loss');
      const garbled = `garbled-${randomUUID()}`;
      await admin.zadd(redisKeys(PREFIX, garbled).log, 0, 'no seqno here at all');
      const err = await failure(c.scan(garbled, 0n, 10));
      expect(err.code).toBe('data_loss');
      expect(err.determinate).toBe(true);
    } finally {
      await c.close();
    }
  });

  describe('a compare-and-set cut off in flight', () => {
    /** Pauses writes on the server (reads and admin commands go on) while `during` runs. */
    async function whileWritesPaused(during: () => Promise<void>) {
      await admin.call('CLIENT', 'PAUSE', '3000', 'WRITE');
      try {
        await during();
      } finally {
        await admin.call('CLIENT', 'UNPAUSE');
      }
    }

    /** Waits until `name`'s connection is blocked by the pause; returns its client id. */
    async function pausedClientId(name: string): Promise<string> {
      const deadline = Date.now() + 2000;
      while (Date.now() < deadline) {
        const list = String(await admin.call('CLIENT', 'LIST'));
        for (const line of list.split('\n')) {
          if (line.includes(` name=${name} `) && / flags=\w*b/.test(line)) {
            const id = /^id=(\d+)/.exec(line)?.[1];
            if (id !== undefined) return id;
          }
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error(`no paused client named ${name}`);
    }

    it('is indeterminate when its connection is killed, then works again', async () => {
      const name = `kill-${run}`;
      const c = await openRedisConsensus(URL, { keyPrefix: PREFIX, connectionName: name });
      const key = `kill-${randomUUID()}`;
      try {
        await whileWritesPaused(async () => {
          const cas = failure(c.compareAndSet(key, null, { seqno: 0n, data: bytes('x') }));
          const id = await pausedClientId(name);
          await admin.call('CLIENT', 'KILL', 'ID', id);
          const err = await cas;
          expect(err.code).toBe('indeterminate');
          expect(err.determinate).toBe(false);
        });
        // Not reconnected yet, or already: either a determinate refusal or an answer.
        const deadline = Date.now() + 5000;
        for (;;) {
          try {
            expect(await c.head(key)).toBeUndefined();
            break;
          } catch (err) {
            expect(err).toBeInstanceOf(ConsensusError);
            expect((err as ConsensusError).code).toBe('unavailable');
            expect((err as ConsensusError).determinate).toBe(true);
            if (Date.now() > deadline) throw err;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        expect(await c.compareAndSet(key, null, { seqno: 0n, data: bytes('y') })).toBe('committed');
      } finally {
        await c.close();
      }
    });

    it('is indeterminate on a command timeout, and the write may still land', async () => {
      const c = await openRedisConsensus(URL, { keyPrefix: PREFIX, commandTimeoutMs: 200 });
      const key = `timeout-${randomUUID()}`;
      try {
        await whileWritesPaused(async () => {
          const err = await failure(c.compareAndSet(key, null, { seqno: 0n, data: bytes('x') }));
          expect(err.code).toBe('indeterminate');
          expect(err.determinate).toBe(false);
        });
        // The command was queued on the server and ran once the pause ended.
        const deadline = Date.now() + 5000;
        while ((await c.head(key)) === undefined && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 10));
        }
        expect((await c.head(key))?.seqno).toBe(0n);
      } finally {
        await c.close();
      }
    });

    it('is indeterminate when its signal fires mid-flight', async () => {
      const name = `abort-${run}`;
      const c = await openRedisConsensus(URL, { keyPrefix: PREFIX, connectionName: name });
      const key = `abort-${randomUUID()}`;
      try {
        await whileWritesPaused(async () => {
          const ac = new AbortController();
          const cas = failure(
            c.compareAndSet(key, null, { seqno: 0n, data: bytes('x') }, { signal: ac.signal }),
          );
          await pausedClientId(name);
          ac.abort(new Error('caller gave up'));
          const err = await cas;
          expect(err.code).toBe('indeterminate');
          expect(err.determinate).toBe(false);
        });
      } finally {
        await c.close();
      }
    });
  });

  it('fails a committed CAS as indeterminate when too few replicas acknowledge it', async () => {
    const replicas = Number(
      /connected_slaves:(\d+)/.exec(String(await admin.info('replication')))?.[1] ?? 0,
    );
    const c: Consensus = await openRedisConsensus(URL, {
      keyPrefix: PREFIX,
      waitReplicas: replicas + 1,
      waitTimeoutMs: 50,
    });
    try {
      const key = `wait-${randomUUID()}`;
      const err = await failure(c.compareAndSet(key, null, { seqno: 0n, data: bytes('w') }));
      expect(err.code).toBe('indeterminate');
      expect(err.message).toMatch(/replicas/);
      // It did commit on the primary.
      expect((await c.head(key))?.seqno).toBe(0n);
    } finally {
      await c.close();
    }
  });
});
