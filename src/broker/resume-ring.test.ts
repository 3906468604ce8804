import { describe, expect, it } from 'vitest';
import { createResumeStore, MAX_SLOT_BYTES, type ResumeResult } from './resume-ring.js';

const frame = (text: string, size = text.length) => {
  const b = new Uint8Array(size).fill(0x2e);
  b.set(new TextEncoder().encode(text));
  return b;
};
const text = (b: Uint8Array) => new TextDecoder().decode(b).replace(/\.+$/, '');
const A = { name: 'a' };
const B = { name: 'b' };
/** What a replay holds, as `{ kind, items: frame texts, fromSeqno? }`. */
const view = (r: ResumeResult) => ({ ...r, items: r.items.map((e) => text(e.frame)) });

describe('resume store', () => {
  it('replays entries after a seqno in order, without duplicates', () => {
    const r = createResumeStore({ ringSize: 8, maxTotalBytes: 1000 });
    for (const n of [1n, 2n, 4n, 3n, 4n, 5n]) r.record('s', n, frame(`d${n}`, 10), A);
    expect(view(r.replay('s', 2n))).toEqual({ kind: 'complete', items: ['d3', 'd4', 'd5'] });
    expect(view(r.replay('s', 0n))).toEqual({
      kind: 'complete',
      items: ['d1', 'd2', 'd3', 'd4', 'd5'],
    });
    expect(view(r.replay('s', 9n))).toEqual({ kind: 'complete', items: [] });
    expect(r.lastSeqno('s')).toBe(5n);
    expect(r.replay('s', 4n).items.map((e) => [e.seqno, e.sender])).toEqual([[5n, A]]);
  });

  it('reports a gap when the ring no longer reaches n + 1', () => {
    const r = createResumeStore({ ringSize: 3, maxTotalBytes: 1000 });
    for (let n = 1n; n <= 6n; n++) r.record('s', n, frame(`d${n}`, 10), A);
    expect(view(r.replay('s', 2n))).toEqual({
      kind: 'gap',
      items: ['d4', 'd5', 'd6'],
      fromSeqno: 3n,
    });
    expect(view(r.replay('s', 3n))).toEqual({ kind: 'complete', items: ['d4', 'd5', 'd6'] });
    expect(r.replay('unknown', 3n)).toEqual({ kind: 'gap', items: [], fromSeqno: 4n });
    expect(r.totalBytes).toBe(30);
  });

  it('keeps copies: a replayed frame is its own, whatever the caller or later pushes do', () => {
    const r = createResumeStore({ ringSize: 2, maxTotalBytes: 1000 });
    const f = frame('one', 8);
    r.record('s', 1n, f, A);
    f.fill(0);
    const [first] = r.replay('s', 0n).items;
    expect(text(first!.frame)).toBe('one');
    r.record('s', 2n, frame('two', 8), B);
    r.record('s', 3n, frame('three', 8), B);
    expect(text(first!.frame)).toBe('one');
    expect(view(r.replay('s', 0n))).toEqual({
      kind: 'gap',
      items: ['two', 'three'],
      fromSeqno: 1n,
    });
  });

  it('grows with the ring and with wider frames, in order, up to the ring size', () => {
    const r = createResumeStore({ ringSize: 64, maxTotalBytes: 1 << 20 });
    for (let n = 1; n <= 100; n++) {
      // Frames widen as they go (slots resized), one larger than a slot is kept by reference.
      const size = n === 90 ? MAX_SLOT_BYTES + 1 : 10 + n * 5;
      r.record('s', BigInt(n), frame(`d${n}`, size), n % 2 === 0 ? A : B);
    }
    const got = r.replay('s', 0n);
    expect(got.kind).toBe('gap');
    expect(got.items.map((e) => text(e.frame))).toEqual(
      Array.from({ length: 64 }, (_, i) => `d${i + 37}`),
    );
    expect(got.items.map((e) => e.frame.length)).toEqual(
      Array.from({ length: 64 }, (_, i) =>
        i + 37 === 90 ? MAX_SLOT_BYTES + 1 : 10 + (i + 37) * 5,
      ),
    );
    expect(got.items[0]!.sender).toBe(B);
    let bytes = 0;
    for (const e of got.items) bytes += e.frame.length;
    expect(r.totalBytes).toBe(bytes);
    expect(r.lastSeqno('s')).toBe(100n);
  });

  it('bounds the total bytes, evicting the least recently pushed shards (approximately)', () => {
    const r = createResumeStore({ ringSize: 4, maxTotalBytes: 100 });
    r.record('a', 1n, frame('a1', 40), A);
    r.record('b', 1n, frame('b1', 40), A);
    r.record('b', 2n, frame('b2', 5), A);
    r.record('c', 1n, frame('c1', 40), A);
    expect(r.totalBytes).toBeLessThanOrEqual(100);
    // The oldest ring not pushed since it was placed goes: 'a' ('b' was pushed again).
    expect(r.replay('a', 0n).kind).toBe('gap');
    expect(view(r.replay('b', 0n))).toEqual({ kind: 'complete', items: ['b1', 'b2'] });
    r.record('big', 1n, frame('x', 500), A);
    expect(r.totalBytes).toBeLessThanOrEqual(500);
    expect(r.shardCount).toBe(1);
    // A single shard over the budget keeps only its newest entry.
    r.record('big', 2n, frame('y', 500), A);
    expect(view(r.replay('big', 0n))).toEqual({ kind: 'gap', items: ['y'], fromSeqno: 1n });
    expect(r.totalBytes).toBe(500);
  });

  it('evicts by second chance: a ring pushed since placed moves to the young end once', () => {
    const r = createResumeStore({ ringSize: 4, maxTotalBytes: 100 });
    r.record('a', 1n, frame('a1', 30), A);
    r.record('b', 1n, frame('b1', 30), A);
    r.record('c', 1n, frame('c1', 30), A);
    r.record('a', 2n, frame('a2', 5), A);
    // Over by 25: 'a' (pushed since placed) moves behind 'c', 'b' goes.
    r.record('d', 1n, frame('d1', 30), A);
    expect(r.replay('b', 0n).kind).toBe('gap');
    expect(view(r.replay('a', 0n))).toEqual({ kind: 'complete', items: ['a1', 'a2'] });
    // Over again: 'c' is now the oldest placed and not pushed since: it goes, 'a' stays.
    r.record('e', 1n, frame('e1', 30), A);
    expect(r.replay('c', 0n).kind).toBe('gap');
    expect(r.replay('a', 0n).kind).toBe('complete');
    // Then in the order placed: 'd', then 'a' (not pushed since its second chance), not 'e'.
    r.record('f', 1n, frame('f1', 30), A);
    expect(r.replay('d', 0n).kind).toBe('gap');
    r.record('g', 1n, frame('g1', 30), A);
    expect(r.replay('a', 0n).kind).toBe('gap');
    expect(r.replay('e', 0n).kind).toBe('complete');
    expect(r.totalBytes).toBeLessThanOrEqual(100);
  });

  it('ring size 0 keeps nothing', () => {
    const r = createResumeStore({ ringSize: 0, maxTotalBytes: 100 });
    r.record('a', 1n, frame('a1'), A);
    expect(r.replay('a', 0n).kind).toBe('gap');
    expect(r.totalBytes).toBe(0);
  });
});
