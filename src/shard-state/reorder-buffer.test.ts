import { describe, expect, it } from 'vitest';
import { ReorderBuffer } from './reorder-buffer.js';

describe('reorder buffer', () => {
  it('holds diffs by seqno and hands out the next one in order', () => {
    const b = new ReorderBuffer<string>();
    b.hold(5n, 'e');
    b.hold(3n, 'c');
    b.hold(4n, 'd');
    expect(b.lowest()).toBe(3n);
    expect(b.take(2n)).toBeUndefined();
    expect(b.take(3n)).toBe('c');
    expect(b.has(3n)).toBe(false);
    expect(b.size).toBe(2);
  });

  it('times a gap from the first hold until the buffer empties', () => {
    const b = new ReorderBuffer<string>();
    b.openGap(100);
    expect(b.gap).toEqual({ kind: 'none' }); // nothing held: no gap
    b.hold(3n, 'c');
    b.hold(4n, 'd');
    b.openGap(100);
    b.openGap(150); // already open: keeps its start
    expect(b.gap).toEqual({ kind: 'open', sinceMs: 100, windowStartMs: 100 });
    expect(b.discardThrough(3n, 160)).toBeUndefined(); // 4 still held
    expect(b.discardThrough(4n, 170)).toBe(70);
    expect(b.gap).toEqual({ kind: 'none' });
    expect(b.closeGap(200)).toBeUndefined();
  });

  it('a new window keeps the gap start for the histogram', () => {
    const b = new ReorderBuffer<string>();
    b.hold(7n, 'g');
    b.openGap(10);
    b.newWindow(40);
    expect(b.gap).toEqual({ kind: 'open', sinceMs: 10, windowStartMs: 40 });
    b.clear();
    expect(b.size).toBe(0);
    expect(b.gap).toEqual({ kind: 'none' });
    b.hold(9n, 'i');
    b.newWindow(50);
    expect(b.gap).toEqual({ kind: 'open', sinceMs: 50, windowStartMs: 50 });
  });
});
