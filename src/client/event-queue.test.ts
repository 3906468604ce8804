import { describe, expect, it } from 'vitest';
import { EventQueue } from './event-queue.js';
import type { PubSubEvent } from './pubsub-client.js';

const diff = (shardId: string, seqno: bigint): PubSubEvent => ({
  kind: 'diff',
  shardId,
  seqno,
  diff: new Uint8Array(),
  originTimestampMs: undefined,
  brokerTimestampMs: undefined,
});

describe('event queue', () => {
  it('a waiting batch consumer gets a whole turn of events as one batch, past the bound', async () => {
    const dropped: PubSubEvent[] = [];
    const q = new EventQueue(
      () => 2,
      (e) => dropped.push(e),
    );
    const it = q.batches()[Symbol.asyncIterator]();
    const first = it.next();
    for (let i = 1n; i <= 10n; i++) expect(q.push(diff('s1', i))).toBe(true);
    const r = await first;
    expect(r.done).toBe(false);
    expect((r.value as PubSubEvent[]).map((e) => (e.kind === 'diff' ? e.seqno : 0n))).toEqual(
      Array.from({ length: 10 }, (_, i) => BigInt(i + 1)),
    );
    expect(dropped).toEqual([]);
  });

  it('while the batch consumer is busy the bound holds, and the lagged shard gets one gap first', async () => {
    const dropped: PubSubEvent[] = [];
    const q = new EventQueue(
      () => 2,
      (e) => dropped.push(e),
    );
    const it = q.batches()[Symbol.asyncIterator]();
    for (let i = 1n; i <= 5n; i++) q.push(diff('s1', i));
    expect(dropped.length).toBe(3);
    const r = await it.next();
    expect(r.value?.map((e: PubSubEvent) => e.kind)).toEqual(['gap', 'diff', 'diff']);
    expect(r.value?.[0]).toMatchObject({ kind: 'gap', shardId: 's1', reason: 'client_lagged' });
    q.close();
    expect(await it.next()).toEqual({ value: undefined, done: true });
  });

  it('has one consumer: events() or batches(); leaving the loop frees it', async () => {
    const q = new EventQueue(
      () => 25,
      () => {},
    );
    const batches = q.batches()[Symbol.asyncIterator]();
    expect(() => q[Symbol.asyncIterator]()).toThrow(/one consumer/);
    const pending = batches.next();
    await batches.return?.();
    expect(await pending).toEqual({ value: undefined, done: true });
    const singles = q[Symbol.asyncIterator]();
    q.push(diff('s1', 1n));
    expect(await singles.next()).toMatchObject({ done: false, value: { seqno: 1n } });
  });

  it('a sink takes what was queued at once, then each event as it is pushed, past the bound', () => {
    const dropped: PubSubEvent[] = [];
    const q = new EventQueue(
      () => 2,
      (e) => dropped.push(e),
    );
    for (let i = 1n; i <= 3n; i++) q.push(diff('s1', i));
    expect(dropped.length).toBe(1);
    const seen: PubSubEvent[] = [];
    const stop = q.sink((e) => seen.push(e));
    expect(seen.map((e) => e.kind)).toEqual(['gap', 'diff', 'diff']);
    for (let i = 4n; i <= 10n; i++) expect(q.push(diff('s1', i))).toBe(true);
    expect(seen.length).toBe(10);
    expect(q.size).toBe(0);
    expect(dropped.length).toBe(1);
    expect(() => q.batches()[Symbol.asyncIterator]()).toThrow(/one consumer/);
    stop();
    // Queued again (for the next consumer), and bounded again.
    q.push(diff('s1', 11n));
    expect(seen.length).toBe(10);
    expect(q.size).toBe(1);
    stop();
    const it = q[Symbol.asyncIterator]();
    expect(typeof it.next).toBe('function');
  });

  it('a sink gets nothing once the queue is closed', () => {
    const q = new EventQueue(
      () => 25,
      () => {},
    );
    const seen: PubSubEvent[] = [];
    q.sink((e) => seen.push(e));
    q.push(diff('s1', 1n));
    q.close();
    expect(q.push(diff('s1', 2n))).toBe(false);
    expect(seen.length).toBe(1);
  });
});
