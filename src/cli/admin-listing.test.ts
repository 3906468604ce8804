import { describe, expect, it } from 'vitest';
import { listAdmin, parseAdminUrl } from './admin-listing.js';
import { CliError } from './cli-error.js';
import { take } from './command-options.js';

/** A fake admin endpoint: an endless listing, 2 items a page, every third page empty. */
function endless() {
  const requests: URL[] = [];
  const fetch = (async (input: string | URL | Request) => {
    const url = new URL(String(input));
    requests.push(url);
    const page = Number(url.searchParams.get('page_token') ?? '0');
    const items = page % 3 === 2 ? [] : [`a${page}`, `b${page}`].map((id) => ({ shard_id: id }));
    return Response.json({ shards: items, next_page_token: String(page + 1) });
  }) as typeof globalThis.fetch;
  return { fetch, requests };
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('listAdmin', () => {
  it('follows tokens across empty pages and fetches no page past --limit', async () => {
    const { fetch, requests } = endless();
    const items = listAdmin<{ shard_id: string }>({
      admin: 'http://a:1',
      path: '/v1/shards',
      key: 'shards',
      pageSize: 2,
      fetch,
    });
    const got = await collect(take(items, 5));
    expect(got.map((s) => s.shard_id)).toEqual(['a0', 'b0', 'a1', 'b1', 'a3']);
    expect(requests.map((u) => u.searchParams.get('page_token'))).toEqual([null, '1', '2', '3']);
    expect(requests[0]?.searchParams.get('page_size')).toBe('2');
  });

  it('refuses a listing that hands back the token it was given (it would never end)', async () => {
    let calls = 0;
    const fetch = (async () => {
      calls++;
      return Response.json({ shards: [calls], next_page_token: 'same' });
    }) as typeof globalThis.fetch;
    const seen: unknown[] = [];
    await expect(
      (async () => {
        for await (const x of listAdmin({ admin: 'http://a:1', path: '/p', key: 'shards', fetch }))
          seen.push(x);
      })(),
    ).rejects.toMatchObject({ code: 'bad_response' });
    expect(calls).toBe(2);
    expect(seen).toEqual([1]);
  });

  it('stops when no token comes back', async () => {
    let calls = 0;
    const fetch = (async () => {
      calls++;
      return Response.json(calls === 1 ? { shards: [1], next_page_token: 't' } : { shards: [2] });
    }) as typeof globalThis.fetch;
    const got = await collect(listAdmin({ admin: 'http://a:1', path: '/p', key: 'shards', fetch }));
    expect(got).toEqual([1, 2]);
  });

  it('turns an error answer, a non-JSON answer and a missing list into typed errors', async () => {
    const answer = (res: Response) =>
      collect(
        listAdmin({
          admin: 'http://a:1',
          path: '/p',
          key: 'shards',
          fetch: (async () => res) as typeof globalThis.fetch,
        }),
      );
    await expect(
      answer(Response.json({ error: { code: 'x', message: 'no' } }, { status: 400 })),
    ).rejects.toMatchObject({ code: 'http_error', message: expect.stringMatching(/400: no$/) });
    await expect(answer(new Response('<html>'))).rejects.toMatchObject({ code: 'bad_response' });
    await expect(answer(Response.json({ other: [] }))).rejects.toMatchObject({
      code: 'bad_response',
    });
    await expect(
      collect(
        listAdmin({
          admin: 'http://a:1',
          path: '/p',
          key: 'k',
          fetch: (async () => {
            throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
          }) as typeof globalThis.fetch,
        }),
      ),
    ).rejects.toMatchObject({
      code: 'unreachable',
      message: expect.stringMatching(/ECONNREFUSED/),
    });
  });

  it('parseAdminUrl accepts http(s) URLs and rejects the rest', () => {
    expect(parseAdminUrl('http://127.0.0.1:6880/')).toBe('http://127.0.0.1:6880');
    expect(() => parseAdminUrl('127.0.0.1:6880')).toThrow(CliError);
    expect(() => parseAdminUrl('grpc://h:1')).toThrow(/--admin must be http/);
  });
});
