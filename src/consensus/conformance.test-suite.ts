/**
 * The one conformance suite every Consensus backend passes (docs/architecture.md "Consensus semantics").
 *
 *   describeConformance('sqlite', () => openSqliteConsensus(path));
 *
 * `open` must return a fresh handle on the SAME store each time it is called (the concurrency
 * tests open several and race them). Every test opens its own handles, uses fresh random keys
 * under a per-run prefix and closes what it opened, so the suite can run against a Postgres or
 * Redis shared with other suites running in parallel. Keys are never deleted (the contract has
 * no delete): point a shared backend at a per-run table or key prefix if that matters.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_SEQNO } from '../protocol/index.js';
import { ConsensusError, type ConsensusErrorCode } from './errors.js';
import { MAX_DATA_BYTES, MAX_KEY_BYTES } from './limits.js';
import type { Consensus, VersionedData } from './types.js';

const encoder = new TextEncoder();
const bytes = (s: string): Uint8Array => encoder.encode(s);
const text = (b: Uint8Array | undefined): string | undefined =>
  b === undefined ? undefined : new TextDecoder().decode(b);

/** Runs `fn` and returns the `ConsensusError` it rejected (or threw) with; fails otherwise. */
async function failure(fn: () => Promise<unknown>): Promise<ConsensusError> {
  let result: unknown;
  try {
    result = await fn();
  } catch (err) {
    if (!(err instanceof ConsensusError)) {
      throw new Error(`expected a ConsensusError, got ${String(err)}`, { cause: err });
    }
    return err;
  }
  throw new Error(`expected a ConsensusError, but the call resolved with ${String(result)}`);
}

async function expectCode(fn: () => Promise<unknown>, code: ConsensusErrorCode): Promise<void> {
  const err = await failure(fn);
  expect(err.code, err.message).toBe(code);
  expect(err.determinate).toBe(true);
}

const v = (seqno: bigint, data = `v${seqno}`): VersionedData => ({ seqno, data: bytes(data) });

/** Appends versions `0..n-1` to `key`, each by compare-and-set on the previous head. */
async function fill(c: Consensus, key: string, n: number): Promise<void> {
  let expected: bigint | null = null;
  for (let i = 0n; i < BigInt(n); i++) {
    expect(await c.compareAndSet(key, expected, v(i))).toBe('committed');
    expected = i;
  }
}

/** Runs `fn` over `items` with at most `width` in flight. */
async function inBatches<T>(items: T[], width: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

export function describeConformance(name: string, open: () => Promise<Consensus>): void {
  describe(`consensus conformance: ${name}`, () => {
    const run = `conf-${randomUUID()}`;
    let counter = 0;
    /** A fresh key no other test (or suite sharing the backend) uses. */
    const key = (label = 'k') => `${run}/${label}/${counter++}`;

    const opened: Consensus[] = [];
    const client = async (): Promise<Consensus> => {
      const c = await open();
      opened.push(c);
      return c;
    };
    afterEach(async () => {
      const all = opened.splice(0);
      await Promise.all(all.map((c) => c.close().catch(() => undefined)));
    });

    it('names its backend', async () => {
      const c = await client();
      expect(['memory', 'sqlite', 'postgres', 'redis']).toContain(c.backend);
    });

    it('reports no head, an empty scan, for a key never written', async () => {
      const c = await client();
      const k = key();
      expect(await c.head(k)).toBeUndefined();
      expect(await c.scan(k, 0n, 10)).toEqual([]);
    });

    it('commits a first write only with expected = null', async () => {
      const c = await client();
      const k = key();
      expect(await c.compareAndSet(k, 0n, v(1n))).toBe('mismatch');
      expect(await c.head(k)).toBeUndefined();
      expect(await c.compareAndSet(k, null, v(3n, 'first'))).toBe('committed');
      const head = await c.head(k);
      expect(head?.seqno).toBe(3n);
      expect(text(head?.data)).toBe('first');
      // A second "first write" loses.
      expect(await c.compareAndSet(k, null, v(4n))).toBe('mismatch');
      expect((await c.head(k))?.seqno).toBe(3n);
    });

    it('reports a mismatch for expected below or above the head, and changes nothing', async () => {
      const c = await client();
      const k = key();
      await fill(c, k, 3); // head 2
      expect(await c.compareAndSet(k, 1n, v(5n))).toBe('mismatch');
      expect(await c.compareAndSet(k, 0n, v(1n))).toBe('mismatch');
      expect(await c.compareAndSet(k, 3n, v(4n))).toBe('mismatch');
      expect(await c.compareAndSet(k, 100n, v(101n))).toBe('mismatch');
      expect((await c.scan(k, 0n, 100)).map((x) => x.seqno)).toEqual([0n, 1n, 2n]);
      expect(await c.compareAndSet(k, 2n, v(3n))).toBe('committed');
    });

    it('allows gaps between seqnos: only next.seqno > expected is required', async () => {
      const c = await client();
      const k = key();
      expect(await c.compareAndSet(k, null, v(0n))).toBe('committed');
      expect(await c.compareAndSet(k, 0n, v(5n))).toBe('committed');
      expect(await c.compareAndSet(k, 5n, v(100n))).toBe('committed');
      expect((await c.head(k))?.seqno).toBe(100n);
      expect((await c.scan(k, 1n, 10)).map((x) => x.seqno)).toEqual([5n, 100n]);
      expect((await c.scan(k, 6n, 10)).map((x) => x.seqno)).toEqual([100n]);
      expect(await c.compareAndSet(k, 5n, v(6n))).toBe('mismatch');
    });

    it('rejects next.seqno <= expected as invalid_argument, not a mismatch', async () => {
      const c = await client();
      const k = key();
      await fill(c, k, 3); // head 2
      await expectCode(() => c.compareAndSet(k, 2n, v(2n)), 'invalid_argument');
      await expectCode(() => c.compareAndSet(k, 2n, v(1n)), 'invalid_argument');
      // Even when expected is not the head: the argument check comes first.
      await expectCode(() => c.compareAndSet(k, 7n, v(7n)), 'invalid_argument');
      expect((await c.head(k))?.seqno).toBe(2n);
    });

    it('accepts seqnos 0 and 2^63-1 and keeps values above 2^53 exact', async () => {
      const c = await client();
      const k = key();
      expect(await c.compareAndSet(k, null, v(0n))).toBe('committed');
      const big = (1n << 53n) + 1n;
      expect(await c.compareAndSet(k, 0n, v(big))).toBe('committed');
      expect((await c.head(k))?.seqno).toBe(big);
      expect(await c.compareAndSet(k, big + 1n, v(MAX_SEQNO))).toBe('mismatch');
      expect(await c.compareAndSet(k, big, v(MAX_SEQNO - 1n))).toBe('committed');
      expect(await c.compareAndSet(k, MAX_SEQNO - 1n, v(MAX_SEQNO, 'max'))).toBe('committed');
      const head = await c.head(k);
      expect(head?.seqno).toBe(MAX_SEQNO);
      expect(text(head?.data)).toBe('max');
      expect((await c.scan(k, MAX_SEQNO, 1)).map((x) => x.seqno)).toEqual([MAX_SEQNO]);
      expect((await c.scan(k, big, 10)).map((x) => x.seqno)).toEqual([
        big,
        MAX_SEQNO - 1n,
        MAX_SEQNO,
      ]);
      // Nothing can follow 2^63-1.
      await expectCode(() => c.compareAndSet(k, MAX_SEQNO, v(MAX_SEQNO + 1n)), 'invalid_argument');
      expect(await c.truncate(k, MAX_SEQNO)).toBe(3);
      expect((await c.scan(k, 0n, 10)).map((x) => x.seqno)).toEqual([MAX_SEQNO]);
    });

    it('rejects seqnos -1 and 2^63 everywhere a seqno is taken', async () => {
      const c = await client();
      const k = key();
      await fill(c, k, 1);
      for (const bad of [-1n, MAX_SEQNO + 1n]) {
        await expectCode(() => c.compareAndSet(k, 0n, v(bad)), 'invalid_argument');
        await expectCode(() => c.compareAndSet(k, bad, v(5n)), 'invalid_argument');
        await expectCode(() => c.scan(k, bad, 1), 'invalid_argument');
        await expectCode(() => c.truncate(k, bad), 'invalid_argument');
      }
      await expectCode(() => c.compareAndSet(k, null, v(-1n)), 'invalid_argument');
      // A number is not a seqno.
      await expectCode(
        () => c.compareAndSet(k, 0n, { seqno: 1 as unknown as bigint, data: bytes('x') }),
        'invalid_argument',
      );
      await expectCode(() => c.scan(k, 0 as unknown as bigint, 1), 'invalid_argument');
      expect((await c.scan(k, 0n, 10)).map((x) => x.seqno)).toEqual([0n]);
    });

    it('scans from a seqno, ascending, at most limit entries', async () => {
      const c = await client();
      const k = key();
      await fill(c, k, 10);
      const seqnos = async (from: bigint, limit: number) =>
        (await c.scan(k, from, limit)).map((x) => x.seqno);
      expect(await seqnos(0n, 3)).toEqual([0n, 1n, 2n]);
      expect(await seqnos(5n, 100)).toEqual([5n, 6n, 7n, 8n, 9n]);
      expect(await seqnos(9n, 1)).toEqual([9n]);
      expect(await seqnos(10n, 5)).toEqual([]);
      expect(await seqnos(0n, 10)).toHaveLength(10);
      const entries = await c.scan(k, 4n, 2);
      expect(entries.map((e) => text(e.data))).toEqual(['v4', 'v5']);
      for (const bad of [0, -1, 1.5, Number.NaN, 100_001]) {
        await expectCode(() => c.scan(k, 0n, bad), 'invalid_argument');
      }
    });

    it('scans after a truncate see only what remains', async () => {
      const c = await client();
      const k = key();
      await fill(c, k, 10);
      expect(await c.truncate(k, 6n)).toBe(6);
      expect((await c.scan(k, 0n, 100)).map((x) => x.seqno)).toEqual([6n, 7n, 8n, 9n]);
      expect((await c.scan(k, 0n, 2)).map((x) => x.seqno)).toEqual([6n, 7n]);
      expect((await c.scan(k, 8n, 100)).map((x) => x.seqno)).toEqual([8n, 9n]);
      expect((await c.head(k))?.seqno).toBe(9n);
    });

    it('truncates below a seqno, returns the count deleted, and is idempotent', async () => {
      const c = await client();
      const k = key();
      await fill(c, k, 10);
      expect(await c.truncate(k, 0n)).toBe(0);
      expect(await c.truncate(k, 5n)).toBe(5);
      expect(await c.truncate(k, 5n)).toBe(0);
      expect(await c.truncate(k, 3n)).toBe(0);
      // Truncating at the head keeps the head.
      expect(await c.truncate(k, 9n)).toBe(4);
      expect(await c.truncate(k, 9n)).toBe(0);
      expect((await c.scan(k, 0n, 100)).map((x) => x.seqno)).toEqual([9n]);
      expect((await c.head(k))?.seqno).toBe(9n);
      // The head still decides the next compare-and-set.
      expect(await c.compareAndSet(k, null, v(10n))).toBe('mismatch');
      expect(await c.compareAndSet(k, 8n, v(10n))).toBe('mismatch');
      expect(await c.compareAndSet(k, 9n, v(10n))).toBe('committed');
    });

    it('refuses to truncate a key with no entries or above its head', async () => {
      const c = await client();
      const k = key();
      await expectCode(() => c.truncate(k, 0n), 'failed_precondition');
      await fill(c, k, 3);
      await expectCode(() => c.truncate(k, 3n), 'failed_precondition');
      await expectCode(() => c.truncate(k, MAX_SEQNO), 'failed_precondition');
      expect((await c.scan(k, 0n, 100)).map((x) => x.seqno)).toEqual([0n, 1n, 2n]);
    });

    it('keeps keys apart, including keys that are prefixes or LIKE patterns of others', async () => {
      const c = await client();
      const base = key('iso');
      const keys = [base, `${base}x`, `${base}%`, `${base}_`, `${base}*`, `${base}?`, `${base}\\`];
      for (const [i, k] of keys.entries()) {
        await c.compareAndSet(k, null, v(BigInt(i), k));
      }
      for (const [i, k] of keys.entries()) {
        const head = await c.head(k);
        expect(head?.seqno).toBe(BigInt(i));
        expect(text(head?.data)).toBe(k);
        expect(await c.scan(k, 0n, 100)).toHaveLength(1);
      }
      expect(await c.truncate(base, 0n)).toBe(0);
      expect(await c.head(`${base}%`)).toMatchObject({ seqno: 2n });
    });

    it('round-trips empty data and every byte value', async () => {
      const c = await client();
      const k = key();
      const all = Uint8Array.from({ length: 512 }, (_, i) => i % 256);
      expect(await c.compareAndSet(k, null, { seqno: 0n, data: new Uint8Array(0) })).toBe(
        'committed',
      );
      expect(await c.compareAndSet(k, 0n, { seqno: 1n, data: all })).toBe('committed');
      const [first, second] = await c.scan(k, 0n, 10);
      expect(first?.data).toBeInstanceOf(Uint8Array);
      expect(first?.data.byteLength).toBe(0);
      expect(second?.data).toBeInstanceOf(Uint8Array);
      expect(Array.from(second?.data ?? [])).toEqual(Array.from(all));
      expect(Array.from((await c.head(k))?.data ?? [])).toEqual(Array.from(all));
    });

    it('stores a 1 MiB version and rejects data over MAX_DATA_BYTES', async () => {
      const c = await client();
      const k = key();
      const big = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 251;
      expect(await c.compareAndSet(k, null, { seqno: 0n, data: big })).toBe('committed');
      const stored = (await c.head(k))?.data ?? new Uint8Array(0);
      expect(stored.byteLength).toBe(big.byteLength);
      expect(big.equals(stored)).toBe(true);
      const over = new Uint8Array(MAX_DATA_BYTES + 1);
      await expectCode(() => c.compareAndSet(k, 0n, { seqno: 1n, data: over }), 'invalid_argument');
      await expectCode(
        () => c.compareAndSet(k, 0n, { seqno: 1n, data: 'text' as unknown as Uint8Array }),
        'invalid_argument',
      );
      expect((await c.head(k))?.seqno).toBe(0n);
    });

    it('rejects bad keys (empty, too long, NUL, lone surrogates, not a string)', async () => {
      const c = await client();
      const longest = `${`${run}/`.padEnd(MAX_KEY_BYTES - 2, 'x')}é`; // exactly MAX_KEY_BYTES
      expect(encoder.encode(longest).byteLength).toBe(MAX_KEY_BYTES);
      const bad = [
        '',
        'x'.repeat(MAX_KEY_BYTES + 1),
        `${'é'.repeat(MAX_KEY_BYTES / 2)}x`,
        `${run}\u0000nul`,
        `${run}\ud800lone`,
        `${run}lone\udfff`,
        42 as unknown as string,
        undefined as unknown as string,
      ];
      for (const k of bad) {
        await expectCode(() => c.head(k), 'invalid_argument');
        await expectCode(() => c.compareAndSet(k, null, v(0n)), 'invalid_argument');
        await expectCode(() => c.scan(k, 0n, 1), 'invalid_argument');
        await expectCode(() => c.truncate(k, 0n), 'invalid_argument');
      }
      // Exactly MAX_KEY_BYTES UTF-8 bytes is fine.
      expect(await c.compareAndSet(longest, null, v(0n, longest))).toBe('committed');
      expect(text((await c.head(longest))?.data)).toBe(longest);
    });

    it('stores keys that look like SQL, Lua, hash tags or globs verbatim', async () => {
      const c = await client();
      const hostile = [
        `${run}'; DROP TABLE consensus; --`,
        `${run}" OR 1=1; --`,
        `${run}]] redis.call('FLUSHALL') --[[`,
        `${run}{shard}`,
        `${run}}{`,
        `{${run}}`,
        `${run}*?[a-z]\\`,
        `${run} spaces\ttab\nnewline`,
        `${run}ünïcødé 🚀 中文`,
        `${run}%_%`,
      ];
      for (const [i, k] of hostile.entries()) {
        expect(await c.compareAndSet(k, null, v(0n, `data ${i}`))).toBe('committed');
        expect(await c.compareAndSet(k, 0n, v(1n, k))).toBe('committed');
      }
      for (const [i, k] of hostile.entries()) {
        const head = await c.head(k);
        expect(head?.seqno).toBe(1n);
        expect(text(head?.data)).toBe(k);
        const entries = await c.scan(k, 0n, 10);
        expect(entries.map((e) => text(e.data))).toEqual([`data ${i}`, k]);
        expect(await c.truncate(k, 1n)).toBe(1);
      }
      const listed = new Set<string>();
      let pageToken: string | undefined;
      do {
        const page = await c.listKeys({ pageSize: 1000, pageToken });
        for (const k of page.keys) if (k.startsWith(run) || k.endsWith(`${run}}`)) listed.add(k);
        pageToken = page.nextPageToken;
      } while (pageToken !== undefined);
      for (const k of hostile) expect(listed.has(k), k).toBe(true);
    });

    it('lists every one of 10,000 keys with small pages, none above the page size', {
      timeout: 180_000,
    }, async () => {
      const c = await client();
      const prefix = key('list');
      const mine = Array.from({ length: 10_000 }, (_, i) => `${prefix}/${i}`);
      await inBatches(mine, 32, async (k) => {
        expect(await c.compareAndSet(k, null, v(0n))).toBe('committed');
      });
      const pageSize = 250;
      const seen = new Set<string>();
      let pageToken: string | undefined;
      let pages = 0;
      do {
        const page = await c.listKeys({ pageSize, pageToken });
        pages++;
        expect(page.keys.length).toBeLessThanOrEqual(pageSize);
        for (const k of page.keys) {
          expect(typeof k).toBe('string');
          if (k.startsWith(`${prefix}/`)) seen.add(k);
        }
        pageToken = page.nextPageToken;
        if (pageToken !== undefined) expect(typeof pageToken).toBe('string');
      } while (pageToken !== undefined);
      expect(pages).toBeGreaterThanOrEqual(mine.length / pageSize);
      expect(seen.size).toBe(mine.length);
      for (const k of mine) if (!seen.has(k)) expect.fail(`listKeys never returned ${k}`);
    });

    it('lists every key that exists for the whole listing while others are being added', {
      timeout: 60_000,
    }, async () => {
      const c = await client();
      const prefix = key('soft');
      const before = Array.from({ length: 500 }, (_, i) => `${prefix}/m/${i}`);
      await inBatches(before, 16, async (k) => {
        expect(await c.compareAndSet(k, null, v(0n))).toBe('committed');
      });
      const seen = new Set<string>();
      let pageToken: string | undefined;
      let added = 0;
      do {
        const page = await c.listKeys({ pageSize: 50, pageToken });
        expect(page.keys.length).toBeLessThanOrEqual(50);
        for (const k of page.keys) if (k.startsWith(`${prefix}/`)) seen.add(k);
        pageToken = page.nextPageToken;
        // New keys sorting before and after everything listed so far.
        for (const k of [`${prefix}/a/${added}`, `${prefix}/z/${added}`]) {
          expect(await c.compareAndSet(k, null, v(0n))).toBe('committed');
        }
        added++;
      } while (pageToken !== undefined);
      for (const k of before) if (!seen.has(k)) expect.fail(`listKeys never returned ${k}`);
    });

    it('rejects bad page sizes and page tokens as invalid_argument', async () => {
      const c = await client();
      for (const pageSize of [0, -1, 1.5, 10_001, Number.NaN]) {
        await expectCode(() => c.listKeys({ pageSize }), 'invalid_argument');
      }
      for (const pageToken of ['%%% not a token %%%', '\u0000']) {
        await expectCode(() => c.listKeys({ pageToken }), 'invalid_argument');
      }
    });

    it('lets exactly one of 8 clients win each of 50 rounds', { timeout: 120_000 }, async () => {
      const clients = await Promise.all(Array.from({ length: 8 }, () => client()));
      const k = key('lockstep');
      const rounds = 50;
      for (let r = 0; r < rounds; r++) {
        const expected = r === 0 ? null : BigInt(r - 1);
        const results = await Promise.all(
          clients.map((c, i) => c.compareAndSet(k, expected, v(BigInt(r), `client ${i}`))),
        );
        const winners = results.flatMap((res, i) => (res === 'committed' ? [i] : []));
        expect(winners, `round ${r}`).toHaveLength(1);
        expect(results.filter((res) => res === 'mismatch')).toHaveLength(clients.length - 1);
        const head = await clients[(r + 1) % clients.length]!.head(k);
        expect(head?.seqno).toBe(BigInt(r));
        expect(text(head?.data)).toBe(`client ${winners[0]}`);
      }
      const history = await clients[0]!.scan(k, 0n, 1000);
      expect(history.map((e) => e.seqno)).toEqual(
        Array.from({ length: rounds }, (_, i) => BigInt(i)),
      );
    });

    it('gives free-running racers one gap-free history', { timeout: 120_000 }, async () => {
      const clients = await Promise.all(Array.from({ length: 8 }, () => client()));
      const k = key('race');
      const target = 200n;
      const commits = clients.map(() => [] as bigint[]);
      await Promise.all(
        clients.map(async (c, i) => {
          for (;;) {
            const head = await c.head(k);
            const expected = head?.seqno ?? null;
            const next = (expected ?? -1n) + 1n;
            if (next >= target) return;
            const res = await c.compareAndSet(k, expected, v(next, `client ${i} seqno ${next}`));
            if (res === 'committed') commits[i]!.push(next);
          }
        }),
      );
      const all = commits.flat().sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      expect(all).toEqual(Array.from({ length: Number(target) }, (_, i) => BigInt(i)));
      const history = await clients[0]!.scan(k, 0n, 1000);
      expect(history.map((e) => e.seqno)).toEqual(all);
      for (const [i, mine] of commits.entries()) {
        for (const s of mine) {
          expect(text(history[Number(s)]?.data)).toBe(`client ${i} seqno ${s}`);
        }
      }
    });

    it('rejects calls with an aborted signal as aborted and applies nothing', async () => {
      const c = await client();
      const k = key();
      await fill(c, k, 2);
      const ac = new AbortController();
      ac.abort(new Error('stop'));
      const signal = ac.signal;
      await expectCode(() => c.head(k, { signal }), 'aborted');
      await expectCode(() => c.compareAndSet(k, 1n, v(2n), { signal }), 'aborted');
      await expectCode(() => c.scan(k, 0n, 10, { signal }), 'aborted');
      await expectCode(() => c.truncate(k, 1n, { signal }), 'aborted');
      await expectCode(() => c.listKeys({ signal }), 'aborted');
      expect((await c.scan(k, 0n, 10)).map((x) => x.seqno)).toEqual([0n, 1n]);
      // A live signal changes nothing.
      const live = new AbortController().signal;
      expect(await c.compareAndSet(k, 1n, v(2n), { signal: live })).toBe('committed');
      expect((await c.head(k, { signal: live }))?.seqno).toBe(2n);
    });

    it('rejects every call after close with closed; close is idempotent', async () => {
      const c = await client();
      const other = await client();
      const k = key();
      await fill(c, k, 1);
      await c.close();
      await c.close();
      await expectCode(() => c.head(k), 'closed');
      await expectCode(() => c.compareAndSet(k, 0n, v(1n)), 'closed');
      await expectCode(() => c.scan(k, 0n, 1), 'closed');
      await expectCode(() => c.truncate(k, 0n), 'closed');
      await expectCode(() => c.listKeys(), 'closed');
      // Closing one handle does not close the store for others.
      expect((await other.head(k))?.seqno).toBe(0n);
    });
  });
}
