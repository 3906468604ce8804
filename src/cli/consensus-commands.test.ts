import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { type Consensus, createMemoryConsensus } from '../consensus/index.js';
import { listAllKeys, printKeys } from './consensus-commands.js';

function sink() {
  const out = new PassThrough();
  let text = '';
  out.setEncoding('utf8').on('data', (c: string) => {
    text += c;
  });
  return { out, lines: () => text.trimEnd().split('\n') };
}

describe('keys over a memory Consensus', () => {
  it('prints every key across pages, with a header, and stops at --limit', async () => {
    const c = createMemoryConsensus();
    const ids = Array.from({ length: 25 }, (_, i) => `s${i}`);
    for (const id of ids) await c.compareAndSet(id, null, { seqno: 1n, data: new Uint8Array() });
    const s = sink();
    expect(await printKeys(c, { out: s.out, json: false, pageSize: 4 })).toBe(25);
    expect(s.lines()[0]).toBe('KEY');
    expect(s.lines().slice(1).sort()).toEqual([...ids].sort());
    const j = sink();
    expect(await printKeys(c, { out: j.out, json: true, pageSize: 4, limit: 6 })).toBe(6);
    expect(j.lines().map((l) => (JSON.parse(l) as { key: string }).key)).toHaveLength(6);
  });

  it('passes on the soft guarantees: empty pages are followed, duplicates are not hidden', async () => {
    const pages = [
      { keys: ['a', 'b'], nextPageToken: '1' },
      { keys: [], nextPageToken: '2' },
      { keys: ['b', 'c'] },
    ];
    const tokens: Array<string | undefined> = [];
    const fake = {
      listKeys: async (o: { pageToken?: string }) => {
        tokens.push(o.pageToken);
        return pages[Number(o.pageToken ?? '0')];
      },
    } as unknown as Consensus;
    const keys: string[] = [];
    for await (const k of listAllKeys(fake)) keys.push(k);
    expect(keys).toEqual(['a', 'b', 'b', 'c']);
    expect(tokens).toEqual([undefined, '1', '2']);
  });
});
