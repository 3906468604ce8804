import { describe, expect, it } from 'vitest';
import { BackgroundQueue } from './background-queue.js';

/** A hand-cranked event loop: `turn()` runs what was deferred before it. */
function manualLoop() {
  let queued: Array<() => void> = [];
  return {
    defer: (fn: () => void) => {
      queued.push(fn);
    },
    turn() {
      const now = queued;
      queued = [];
      for (const fn of now) fn();
    },
    get deferred() {
      return queued.length;
    },
  };
}

describe('BackgroundQueue', () => {
  it('starts nothing in the turn that queues, then at most perTurn tasks a turn, in order', () => {
    const loop = manualLoop();
    const q = new BackgroundQueue({ perTurn: 3, defer: loop.defer });
    const ran: number[] = [];
    for (let i = 0; i < 8; i++) q.run(() => ran.push(i));
    expect(ran).toEqual([]);
    expect(loop.deferred).toBe(1); // one deferred turn, not one per task
    loop.turn();
    expect(ran).toEqual([0, 1, 2]);
    loop.turn();
    expect(ran).toEqual([0, 1, 2, 3, 4, 5]);
    expect(q.pending).toBe(2);
    loop.turn();
    expect(ran).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(q.pending).toBe(0);
    expect(loop.deferred).toBe(0); // drained: nothing left scheduled
  });

  it('a task queued by a task runs in a later turn, within the budget', () => {
    const loop = manualLoop();
    const q = new BackgroundQueue({ perTurn: 2, defer: loop.defer });
    const ran: string[] = [];
    q.run(() => {
      ran.push('a');
      q.run(() => ran.push('c'));
    });
    q.run(() => ran.push('b'));
    loop.turn();
    expect(ran).toEqual(['a', 'b']);
    loop.turn();
    expect(ran).toEqual(['a', 'b', 'c']);
  });

  it('a throwing task is reported and the rest still run', () => {
    const loop = manualLoop();
    const errors: unknown[] = [];
    const q = new BackgroundQueue({ defer: loop.defer, onError: (e) => errors.push(e) });
    const ran: number[] = [];
    q.run(() => {
      throw new Error('boom');
    });
    q.run(() => ran.push(1));
    loop.turn();
    expect(ran).toEqual([1]);
    expect(errors).toHaveLength(1);
  });

  it('refuses a budget that is not a positive integer', () => {
    expect(() => new BackgroundQueue({ perTurn: 0 })).toThrow(RangeError);
    expect(() => new BackgroundQueue({ perTurn: 1.5 })).toThrow(RangeError);
  });

  it('runs on setImmediate by default', async () => {
    const q = new BackgroundQueue();
    let ran = false;
    q.run(() => {
      ran = true;
    });
    expect(ran).toBe(false);
    await new Promise((r) => setImmediate(r));
    expect(ran).toBe(true);
  });
});

describe('BackgroundQueue.drain', () => {
  it('starts every queued task at once, in order, and leaves nothing scheduled to run', () => {
    const loop = manualLoop();
    const q = new BackgroundQueue({ perTurn: 1, defer: loop.defer });
    const ran: number[] = [];
    for (let i = 0; i < 3; i++) q.run(() => ran.push(i));
    q.drain();
    expect(ran).toEqual([0, 1, 2]);
    expect(q.pending).toBe(0);
    loop.turn(); // the turn deferred before the drain finds nothing
    expect(ran).toEqual([0, 1, 2]);
  });
});
