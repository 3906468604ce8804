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
});
