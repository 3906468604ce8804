import { describe, expect, it } from 'vitest';
import { createResumeStore } from './resume-ring.js';

describe('resume store', () => {
  it('replays entries after a seqno in order, without duplicates', () => {
    const r = createResumeStore<string>({ ringSize: 8, maxTotalBytes: 1000 });
    for (const n of [1n, 2n, 4n, 3n, 4n, 5n]) r.record('s', n, `d${n}`, 10);
    expect(r.replay('s', 2n)).toEqual({ kind: 'complete', items: ['d3', 'd4', 'd5'] });
    expect(r.replay('s', 0n)).toEqual({ kind: 'complete', items: ['d1', 'd2', 'd3', 'd4', 'd5'] });
    expect(r.replay('s', 9n)).toEqual({ kind: 'complete', items: [] });
    expect(r.lastSeqno('s')).toBe(5n);
  });

  it('reports a gap when the ring no longer reaches n + 1', () => {
    const r = createResumeStore<string>({ ringSize: 3, maxTotalBytes: 1000 });
    for (let n = 1n; n <= 6n; n++) r.record('s', n, `d${n}`, 10);
    expect(r.replay('s', 2n)).toEqual({ kind: 'gap', items: ['d4', 'd5', 'd6'], fromSeqno: 3n });
    expect(r.replay('s', 3n)).toEqual({ kind: 'complete', items: ['d4', 'd5', 'd6'] });
    expect(r.replay('unknown', 3n)).toEqual({ kind: 'gap', items: [], fromSeqno: 4n });
  });

  it('bounds the total bytes, evicting the least recently pushed shards (approximately)', () => {
    const r = createResumeStore<string>({ ringSize: 4, maxTotalBytes: 100 });
    r.record('a', 1n, 'a1', 40);
    r.record('b', 1n, 'b1', 40);
    r.record('b', 2n, 'b2', 5);
    // 'a' has aged by a full round of pushes: it moves to the young end (approximate LRU).
    r.record('a', 2n, 'a2', 10);
    r.record('c', 1n, 'c1', 40);
    expect(r.totalBytes).toBeLessThanOrEqual(100);
    expect(r.replay('b', 0n).kind).toBe('gap');
    expect(r.replay('a', 0n)).toEqual({ kind: 'complete', items: ['a1', 'a2'] });
    r.record('big', 1n, 'x', 500);
    expect(r.totalBytes).toBeLessThanOrEqual(500);
    expect(r.shardCount).toBe(1);
  });

  it('ring size 0 keeps nothing', () => {
    const r = createResumeStore<string>({ ringSize: 0, maxTotalBytes: 100 });
    r.record('a', 1n, 'a1', 1);
    expect(r.replay('a', 0n).kind).toBe('gap');
    expect(r.totalBytes).toBe(0);
  });
});
