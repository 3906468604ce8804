import { describe, expect, it } from 'vitest';
import { WaitList, WakeQueue } from './waiters.js';

const w = (seqno: bigint, name: string) => ({ seqno, name });

describe('wait list', () => {
  it('hands out due waits oldest first, from the field and the set alike', () => {
    const list = new WaitList<ReturnType<typeof w>>();
    const a = w(3n, 'a');
    const b = w(1n, 'b');
    const c = w(2n, 'c');
    const d = w(9n, 'd');
    for (const x of [a, b, c, d]) list.add(x);
    expect(list.size).toBe(4);
    const due: string[] = [];
    list.removeDue(3n, (x) => due.push(x.name));
    expect(due).toEqual(['a', 'b', 'c']);
    expect(list.size).toBe(1);
    expect(list.clear().map((x) => x.name)).toEqual(['d']);
    expect(list.size).toBe(0);
  });

  it('keeps the order when the oldest leaves while newer ones wait', () => {
    const list = new WaitList<ReturnType<typeof w>>();
    const a = w(5n, 'a');
    const b = w(5n, 'b');
    list.add(a);
    list.add(b);
    expect(list.delete(a)).toBe(true);
    expect(list.delete(a)).toBe(false);
    // A new wait goes behind b, not into the free field ahead of it.
    list.add(w(5n, 'c'));
    const due: string[] = [];
    list.removeDue(5n, (x) => due.push(x.name));
    expect(due).toEqual(['b', 'c']);
  });

  it('removes what a predicate picks', () => {
    const list = new WaitList<ReturnType<typeof w>>();
    for (const [s, n] of [
      [1n, 'x1'],
      [2n, 'y1'],
      [3n, 'x2'],
    ] as const) {
      list.add(w(s, n));
    }
    const taken: string[] = [];
    list.removeWhere(
      (x) => x.name.startsWith('x'),
      (x) => taken.push(x.name),
    );
    expect(taken).toEqual(['x1', 'x2']);
    expect(list.clear().map((x) => x.name)).toEqual(['y1']);
  });
});

describe('wake queue', () => {
  it('wakes every scheduled shard once, in one microtask after the synchronous run', async () => {
    const q = new WakeQueue();
    const woken: string[] = [];
    const shard = (name: string) => ({ wakeDue: () => woken.push(name) });
    q.schedule(shard('a'));
    q.schedule(shard('b'));
    expect(woken).toEqual([]);
    await Promise.resolve();
    expect(woken).toEqual(['a', 'b']);
    // A later run gets its own microtask.
    q.schedule(shard('c'));
    await Promise.resolve();
    expect(woken).toEqual(['a', 'b', 'c']);
  });
});
