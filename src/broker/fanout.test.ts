import { performance } from 'node:perf_hooks';
import { describe, expect, it, vi } from 'vitest';
import { encodePushDiff } from '../protocol/index.js';
import {
  FLUSH_QUANTUM_BYTES,
  FLUSH_QUANTUM_ITEMS,
  TURN_BUDGET_DELIVERIES,
  TURN_BUDGET_WRITES,
} from './fanout.js';
import { createFakeTurns, setupFanout as setup } from './fanout.test-support.js';
import { PUSH_TIME_SAMPLE_EVERY } from './metrics.js';

const turn = () => new Promise((r) => setImmediate(r));

describe('fan-out core', () => {
  it('delivers to every subscriber but the sender, coalescing one write per turn', async () => {
    const { core, conn, push } = setup();
    const a = conn();
    const b = conn();
    const c = conn();
    for (const x of [a, b, c]) core.subscribe(x.c, 's');
    for (let n = 1n; n <= 5n; n++) push(a.c, 's', n);
    await turn();
    expect(a.sink.got).toEqual([]);
    expect(b.sink.pushes()).toEqual([1n, 2n, 3n, 4n, 5n]);
    expect(c.sink.pushes()).toEqual([1n, 2n, 3n, 4n, 5n]);
    expect(b.sink.writes).toBe(1);
  });

  it("counts calls by caller label, in one counter shared by the label's connections", async () => {
    const { core, conn, push, registry } = setup();
    const a1 = conn(false, 'grpc', 'writer');
    const a2 = conn(false, 'grpc', 'writer');
    const b = conn(false, 'grpc', 'reader');
    core.subscribe(b.c, 's');
    core.subscribe(b.c, 't');
    core.unsubscribe(b.c, 't');
    push(a1.c, 's', 1n);
    push(a2.c, 's', 2n);
    push(a2.c, 's', 3n);
    // A closed connection's calls stay counted.
    core.remove(a1.c, 'test');
    await turn();
    const text = await registry.getSingleMetricAsString('persist_pubsub_server_caller_calls_total');
    expect(text).toMatch(/\{caller_id="writer",call="push"\} 3$/m);
    expect(text).toMatch(/\{caller_id="reader",call="subscribe"\} 2$/m);
    expect(text).toMatch(/\{caller_id="reader",call="unsubscribe"\} 1$/m);
    // No series for a call a label never made.
    expect(text).not.toMatch(/caller_id="writer",call="subscribe"/);
  });

  it('reads the monotonic clock once per turn for receipt, and times one push in PUSH_TIME_SAMPLE_EVERY', async () => {
    const { core, conn, push, metrics } = setup();
    const pub = conn();
    const sub = conn();
    core.subscribe(sub.c, 's');
    const now = vi.spyOn(performance, 'now');
    try {
      const n = 2 * PUSH_TIME_SAMPLE_EVERY;
      for (let i = 1; i <= n; i++) push(pub.c, 's', BigInt(i));
      // Two timed pushes (a start and an end each) and the turn's one receipt stamp.
      expect(now).toHaveBeenCalledTimes(2 * 2 + 1);
      expect(metrics.stats.calls.push).toBe(n);
      expect(metrics.stats.opSeconds.push).toBeGreaterThan(0);
      await turn();
      expect(sub.sink.pushes()).toHaveLength(n);
    } finally {
      now.mockRestore();
    }
  });

  it('reads the wall clock once per turn: the forwarded timestamp of every diff of the turn', () => {
    const turns = createFakeTurns();
    let wall = 5000;
    const now = vi.fn(() => wall++);
    const { core, conn, push } = setup({}, 0, turns.defer, now);
    const pub = conn();
    const sub = conn(false, 'local');
    core.subscribe(sub.c, 's');
    for (let n = 1n; n <= 3n; n++) push(pub.c, 's', n);
    expect(now).toHaveBeenCalledTimes(1);
    turns.turn();
    push(pub.c, 's', 4n);
    turns.turn();
    expect(now).toHaveBeenCalledTimes(2);
    const stamps = sub.sink.got.map((m) => (m.kind === 'push' ? m.timestampMs : -1));
    expect(stamps).toEqual([5000, 5000, 5000, 5001]);
  });

  it("is over its turn's budget once TURN_BUDGET_DELIVERIES items are queued, until the flush", async () => {
    const { core, conn, push } = setup();
    const pub = conn();
    const a = conn();
    const b = conn();
    core.subscribe(a.c, 's');
    core.subscribe(b.c, 's');
    // Two deliveries per push: the budget counts queued items, not pushes.
    for (let n = 1; n < TURN_BUDGET_DELIVERIES / 2; n++) push(pub.c, 's', BigInt(n));
    expect(core.overBudget()).toBe(false);
    push(pub.c, 's', BigInt(TURN_BUDGET_DELIVERIES / 2));
    expect(core.overBudget()).toBe(true);
    await turn();
    expect(core.overBudget()).toBe(false);
    expect(a.sink.pushes()).toHaveLength(TURN_BUDGET_DELIVERIES / 2);
  });

  it('writes a drained backlog a slice per write and a budget per turn, the connections not reached first in the next', () => {
    const turns = createFakeTurns();
    const { core, conn, push, metrics } = setup({ maxQueueMessages: 4096 }, 0, turns.defer);
    const pub = conn();
    const subs = Array.from({ length: 6 }, () => conn());
    /** Per turn, each write as [subscriber index, items]. */
    const log: [number, number][][] = [];
    subs.forEach((x, i) => {
      core.subscribe(x.c, 's');
      x.sink.accept = false;
      x.sink.onWrite = (n) => log.at(-1)?.push([i, n]);
    });
    // Each transport takes one write, then is full while three slices' worth queue up.
    const backlog = 3 * FLUSH_QUANTUM_ITEMS;
    push(pub.c, 's', 1n);
    turns.turn();
    for (let n = 2; n <= backlog + 1; n++) push(pub.c, 's', BigInt(n));
    turns.turn();
    for (const x of subs) {
      expect(x.sink.pushes()).toEqual([1n]);
      expect(x.c.queue).toHaveLength(backlog);
      x.sink.accept = true;
      core.drained(x.c);
    }
    while (turns.pending() > 0) {
      log.push([]);
      turns.turn();
      // Reads wait while a turn leaves writes for the next (see own-h2-server.ts).
      expect(core.overBudget()).toBe(turns.pending() > 0);
    }
    // No write over a slice, no turn over its budget, and no turn short of it but the last.
    expect(log.flat().every(([, n]) => n <= FLUSH_QUANTUM_ITEMS)).toBe(true);
    for (const t of log) {
      expect(t.reduce((a, [, n]) => a + n, 0)).toBeLessThanOrEqual(TURN_BUDGET_WRITES);
    }
    expect(log).toHaveLength(Math.ceil((subs.length * backlog) / TURN_BUDGET_WRITES));
    // Turn 1 reached the first four; turn 2 starts with the two it did not reach.
    const budgetSlices = TURN_BUDGET_WRITES / FLUSH_QUANTUM_ITEMS;
    expect(log[0]!.map(([i]) => i)).toEqual([0, 1, 2, 3].slice(0, budgetSlices));
    expect(log[1]![0]![0]).toBe(budgetSlices);
    // Every diff once, in order, nothing dropped.
    for (const x of subs) {
      expect(x.sink.pushes()).toEqual(Array.from({ length: backlog + 1 }, (_, k) => BigInt(k + 1)));
    }
    expect(metrics.stats.drops.queue_full).toBe(0);
    expect(core.overBudget()).toBe(false);
  });

  it('slices a queue by bytes too (at least one item a write)', () => {
    const turns = createFakeTurns();
    const { core, conn } = setup({ maxQueueMessages: 4096 }, 0, turns.defer);
    const pub = conn();
    const sub = conn();
    core.subscribe(sub.c, 's');
    const diffBytes = Math.ceil(FLUSH_QUANTUM_BYTES / 2.5);
    const big = (n: number) =>
      core.push(
        pub.c,
        's',
        BigInt(n),
        encodePushDiff('s', BigInt(n), new Uint8Array(diffBytes), undefined),
      );
    for (let n = 1; n <= 5; n++) big(n);
    while (turns.pending() > 0) turns.turn();
    // Two of these fit in a slice's bytes, a third does not.
    expect(sub.sink.batches).toEqual([2, 2, 1]);
    expect(sub.sink.pushes()).toEqual([1n, 2n, 3n, 4n, 5n]);
    // One item over a slice's bytes still goes, alone.
    const huge = encodePushDiff('s', 6n, new Uint8Array(FLUSH_QUANTUM_BYTES + 1), undefined);
    core.push(pub.c, 's', 6n, huge);
    turns.turn();
    expect(sub.sink.batches.at(-1)).toBe(1);
    expect(sub.sink.pushes().at(-1)).toBe(6n);
  });

  it('writes all a turn queued, in slices, however many: the budget bounds only a backlog', () => {
    const turns = createFakeTurns();
    const { core, conn, push, metrics } = setup({ maxQueueMessages: 4096 }, 0, turns.defer);
    const pub = conn();
    const hot = conn();
    core.subscribe(hot.c, 's');
    // More per turn than a slice, more than the budget: reads that nothing pauses (node:http2,
    // same-process publishers, the NATS bridge) must not outrun the writes.
    const perTurn = TURN_BUDGET_WRITES + FLUSH_QUANTUM_ITEMS + 10;
    let n = 0;
    for (let t = 0; t < 3; t++) {
      for (let k = 0; k < perTurn; k++) push(pub.c, 's', BigInt(++n));
      turns.turn();
      expect(hot.c.queue).toHaveLength(0);
      expect(core.overBudget()).toBe(false);
    }
    expect(hot.sink.batches.every((b) => b <= FLUSH_QUANTUM_ITEMS)).toBe(true);
    expect(hot.sink.pushes()).toEqual(Array.from({ length: n }, (_, k) => BigInt(k + 1)));
    expect(metrics.stats.drops.queue_full).toBe(0);
  });

  it('eager writes in a push count against the turn budget', () => {
    const turns = createFakeTurns();
    // Eager writes from 512 queued (half the queue).
    const { core, conn, push } = setup({ maxQueueMessages: 1024 }, 0, turns.defer);
    const pub = conn();
    const subs = Array.from({ length: 6 }, () => conn());
    for (const x of subs) {
      core.subscribe(x.c, 's');
      x.sink.accept = false;
    }
    push(pub.c, 's', 1n);
    turns.turn();
    for (let n = 2; n <= 701; n++) push(pub.c, 's', BigInt(n));
    turns.turn();
    for (const x of subs) {
      expect(x.c.queue).toHaveLength(700);
      x.sink.accept = true;
      core.drained(x.c);
    }
    // A push before the turn's flush: each writable queue over half full writes a slice at once,
    // until the turn may write no more (what it queued, 5 items so far, and the budget: five
    // slices); the sixth waits for the turn.
    push(pub.c, 's', 702n);
    expect(subs.map((x) => x.sink.writes)).toEqual([2, 2, 2, 2, 2, 1]);
    while (turns.pending() > 0) turns.turn();
    for (const x of subs) {
      expect(x.sink.pushes()).toEqual(Array.from({ length: 702 }, (_, k) => BigInt(k + 1)));
    }
  });

  it('sends the gap notice after the last slice of the queue', () => {
    const turns = createFakeTurns();
    // A queue of more than a turn's budget.
    const slices = TURN_BUDGET_WRITES / FLUSH_QUANTUM_ITEMS + 1;
    const { core, conn, push } = setup(
      { maxQueueMessages: slices * FLUSH_QUANTUM_ITEMS },
      0,
      turns.defer,
    );
    const pub = conn();
    const sub = conn(true);
    core.subscribe(sub.c, 's');
    sub.sink.accept = false;
    push(pub.c, 's', 1n);
    turns.turn();
    // A full queue, then 10 dropped.
    const last = 1 + slices * FLUSH_QUANTUM_ITEMS;
    for (let n = 2; n <= last + 10; n++) push(pub.c, 's', BigInt(n));
    turns.turn();
    sub.sink.accept = true;
    core.drained(sub.c);
    turns.turn();
    // A budget's slices written: no notice yet, it would overtake the diffs still queued.
    expect(sub.sink.gaps()).toHaveLength(0);
    while (turns.pending() > 0) turns.turn();
    expect(sub.sink.batches).toEqual([1, ...Array(slices).fill(FLUSH_QUANTUM_ITEMS), 1]);
    expect(sub.sink.pushes()).toEqual(Array.from({ length: last }, (_, k) => BigInt(k + 1)));
    expect(sub.sink.got.at(-1)).toMatchObject({
      kind: 'gap',
      fromSeqno: BigInt(last + 1),
      dropped: 10,
    });
  });

  it('a write window: after a write, later turns wait for the window and share one write', async () => {
    const { core, conn, push, clock } = setup({}, 2000);
    const pub = conn();
    const sub = conn();
    const local = conn(true, 'local');
    core.subscribe(sub.c, 's');
    core.subscribe(local.c, 's');
    // Idle: the first push is written at the end of its turn, as with no window.
    push(pub.c, 's', 1n);
    await turn();
    expect(sub.sink.pushes()).toEqual([1n]);
    // Within the window: three turns' pushes wait, then go in one write.
    for (let n = 2n; n <= 4n; n++) {
      await clock.advance(0.5);
      push(pub.c, 's', n);
      await turn();
    }
    expect(sub.sink.writes).toBe(1);
    await clock.advance(0.5);
    expect(sub.sink.pushes()).toEqual([1n, 2n, 3n, 4n]);
    expect(sub.sink.writes).toBe(2);
    // Same-process subscribers have no window: each turn's pushes at once.
    expect(local.sink.writes).toBe(4);
    // Idle longer than the window: at once again.
    await clock.advance(5);
    push(pub.c, 's', 5n);
    await turn();
    expect(sub.sink.pushes()).toEqual([1n, 2n, 3n, 4n, 5n]);
    // A connection that goes away takes its pending window timer with it.
    await clock.advance(1);
    push(pub.c, 's', 6n);
    expect(clock.pending()).toBe(1);
    core.remove(sub.c, 'test');
    expect(clock.pending()).toBe(0);
  });

  it('drops on a full queue, counts it, and sends one gap notice once writable again', async () => {
    const { core, conn, push, metrics } = setup({ maxQueueMessages: 3 });
    const pub = conn();
    const slow = conn(true);
    const old = conn(false);
    const older = conn(false);
    core.subscribe(older.c, 's');
    core.subscribe(slow.c, 's');
    core.subscribe(old.c, 's');
    slow.sink.accept = false;
    push(pub.c, 's', 1n);
    await turn();
    // The transport is now full: the queue takes 3 more, then drops.
    for (let n = 2n; n <= 8n; n++) {
      push(pub.c, 's', n);
      await turn();
    }
    expect(slow.sink.pushes()).toEqual([1n]);
    expect(slow.c.queue).toHaveLength(3);
    expect(metrics.stats.drops.queue_full).toBe(4);
    slow.sink.accept = true;
    core.drained(slow.c);
    await turn();
    expect(slow.sink.pushes()).toEqual([1n, 2n, 3n, 4n]);
    expect(slow.sink.gaps()).toEqual([
      { kind: 'gap', shardId: 's', reason: 'slow_consumer', fromSeqno: 5n, dropped: 4 },
    ]);
    // A client that did not opt in drops the same way but never sees a gap notice.
    older.sink.accept = false;
    push(pub.c, 's', 9n);
    await turn();
    for (let n = 10n; n <= 20n; n++) push(pub.c, 's', n);
    older.sink.accept = true;
    core.drained(older.c);
    await turn();
    // 9 was written (the transport then said stop), 10-12 fill the queue of 3, 13-20 drop.
    expect(older.c.queue).toHaveLength(0);
    expect(older.sink.pushes().slice(-4)).toEqual([9n, 10n, 11n, 12n]);
    expect(older.c.dropped).toBe(8);
    expect(metrics.stats.drops.queue_full).toBe(4 + 8);
    expect(older.sink.gaps()).toEqual([]);
    // A client that did not opt in to extensions never sees a gap notice.
    expect(old.sink.gaps()).toEqual([]);
    // The publisher never waited: every push reached the healthy subscriber.
    expect(old.sink.pushes().slice(0, 8)).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);
  });

  it('a broadcast still queued when its turn ends holds a copy, not the inbound bytes', async () => {
    const { core, conn } = setup();
    const pub = conn();
    const slow = conn();
    core.subscribe(slow.c, 's');
    slow.sink.accept = false;
    const pushOf = (seqno: bigint, fill: number) =>
      encodePushDiff('s', seqno, new Uint8Array(8).fill(fill), undefined);
    core.push(pub.c, 's', 1n, pushOf(1n, 1));
    await turn();
    // `slow` cannot take writes now: the next diff waits in its queue past the turn.
    const inbound = pushOf(2n, 2);
    core.push(pub.c, 's', 2n, inbound);
    await turn();
    expect(slow.c.queue).toHaveLength(1);
    // The inbound chunk is reused once its turn is over: the queued diff is unchanged.
    inbound.fill(0xff);
    slow.sink.accept = true;
    core.drained(slow.c);
    await turn();
    const diffs = (got: typeof slow.sink.got) =>
      got.flatMap((m) => (m.kind === 'push' ? [[...m.diff]] : []));
    expect(diffs(slow.sink.got)).toEqual([new Array(8).fill(1), new Array(8).fill(2)]);
  });

  it('bounds the queue in bytes too, and writes a burst at once while the transport keeps up', async () => {
    const { core, conn, push, metrics } = setup({ maxQueueBytes: 200 });
    const pub = conn();
    const sub = conn();
    core.subscribe(sub.c, 's');
    // A healthy transport: a burst larger than the queue is written as it comes, nothing dropped.
    for (let n = 1n; n <= 10n; n++) push(pub.c, 's', n);
    expect(sub.sink.pushes().length).toBeGreaterThan(0);
    await turn();
    expect(sub.sink.pushes()).toHaveLength(10);
    expect(metrics.stats.drops.queue_full).toBe(0);
    // A full transport: the queue stops at its byte limit and the rest is dropped.
    sub.sink.accept = false;
    push(pub.c, 's', 11n);
    await turn();
    for (let n = 12n; n <= 30n; n++) push(pub.c, 's', n);
    expect(sub.c.queueBytes).toBeLessThanOrEqual(200);
    // Every one of 12..30 is queued (as many frames as fit in 200 bytes) or counted as dropped.
    const frameBytes = sub.c.queueBytes / sub.c.queue.length;
    expect(sub.c.queue).toHaveLength(Math.floor(200 / frameBytes));
    expect(metrics.stats.drops.queue_full).toBe(19 - sub.c.queue.length);
    expect(sub.c.dropped).toBe(19 - sub.c.queue.length);
  });

  it('never calls a same-process subscriber inside a push, even in a burst', async () => {
    const { core, conn, push } = setup({ maxQueueMessages: 100 });
    const pub = conn();
    const local = conn(true, 'local');
    core.subscribe(local.c, 's');
    for (let n = 1n; n <= 80n; n++) push(pub.c, 's', n);
    expect(local.sink.writes).toBe(0);
    await turn();
    expect(local.sink.pushes()).toHaveLength(80);
  });

  /**
   * A subscriber whose sink refuses writes, pushed to until its queue of one is full, under
   * `stuckConnectionTimeoutMs` 1000.
   */
  async function stuckSubscriber() {
    const { core, conn, push, clock } = setup({
      maxQueueMessages: 1,
      stuckConnectionTimeoutMs: 1000,
    });
    const pub = conn();
    const sub = conn();
    core.subscribe(sub.c, 's');
    sub.sink.accept = false;
    push(pub.c, 's', 1n);
    await turn();
    push(pub.c, 's', 2n);
    push(pub.c, 's', 3n);
    return { core, sub, clock };
  }

  it('closes a connection stuck full past stuckConnectionTimeoutMs with RESOURCE_EXHAUSTED', async () => {
    const { sub, clock } = await stuckSubscriber();
    await clock.advance(999);
    expect(sub.sink.aborted).toBeUndefined();
    await clock.advance(1);
    expect(sub.sink.aborted?.code).toBe(8);
  });

  it('a drain before the deadline cancels the stuck close', async () => {
    const { core, sub, clock } = await stuckSubscriber();
    await clock.advance(500);
    sub.sink.accept = true;
    core.drained(sub.c);
    await turn();
    await clock.advance(5000);
    expect(sub.sink.aborted).toBeUndefined();
  });

  it('resume replays held diffs after the seqno, then a gap notice if the ring is short', async () => {
    const { core, conn, push } = setup({ resumeRingSize: 3 });
    const pub = conn();
    for (let n = 1n; n <= 5n; n++) push(pub.c, 's', n);
    const a = conn();
    expect(core.subscribe(a.c, 's', 3n)).toBeUndefined();
    await turn();
    expect(a.sink.pushes()).toEqual([4n, 5n]);
    expect(a.sink.gaps()).toEqual([]);
    const b = conn();
    core.subscribe(b.c, 's', 0n);
    await turn();
    expect(b.sink.pushes()).toEqual([3n, 4n, 5n]);
    expect(b.sink.gaps()).toEqual([
      { kind: 'gap', shardId: 's', reason: 'resume_unavailable', fromSeqno: 1n, dropped: 0 },
    ]);
    // A plain subscribe replays nothing (reference behaviour).
    const c = conn();
    core.subscribe(c.c, 's');
    await turn();
    expect(c.sink.got).toEqual([]);
  });

  it('limits subscriptions per connection', () => {
    const { core, conn } = setup({ maxSubscriptionsPerConnection: 2 });
    const a = conn();
    expect(core.subscribe(a.c, 's1')).toBeUndefined();
    expect(core.subscribe(a.c, 's2')).toBeUndefined();
    expect(core.subscribe(a.c, 's1')).toBeUndefined();
    expect(core.subscribe(a.c, 's3')?.code).toBe(8);
  });

  it('refuse queues one notice for that connection; its stream and other shards carry on', async () => {
    const { core, conn, push } = setup();
    const pub = conn();
    const sub = conn(true);
    core.subscribe(sub.c, 's');
    core.refuse(sub.c, 'bad id', 'invalid_shard_id', 'shard id has a space', 'subscribe');
    push(pub.c, 's', 3n);
    await turn();
    expect(sub.sink.got).toEqual([
      {
        kind: 'refused',
        shardId: 'bad id',
        reason: 'invalid_shard_id',
        detail: 'shard id has a space',
        call: 'subscribe',
      },
      expect.objectContaining({ kind: 'push', seqno: 3n }),
    ]);
    expect(sub.c.state).toBe('open');
    expect(sub.sink.ended).toBeUndefined();
  });

  it('forwardPushes off: pushes are dropped and counted; extension subscribers get a gap notice', async () => {
    const { core, conn, push, flags, metrics } = setup();
    const pub = conn();
    const sub = conn(true);
    core.subscribe(sub.c, 's');
    flags.forwardPushes = false;
    push(pub.c, 's', 7n);
    await turn();
    expect(sub.sink.pushes()).toEqual([]);
    expect(sub.sink.gaps()).toEqual([
      { kind: 'gap', shardId: 's', reason: 'not_forwarding', fromSeqno: 7n, dropped: 1 },
    ]);
    expect(metrics.stats.drops.not_forwarding).toBe(1);
    flags.forwardPushes = true;
    push(pub.c, 's', 8n);
    await turn();
    expect(sub.sink.pushes()).toEqual([8n]);
  });

  it('remove forgets a connection and its subscriptions', () => {
    const { core, conn } = setup();
    const a = conn();
    core.subscribe(a.c, 's');
    core.remove(a.c, 'test');
    core.remove(a.c, 'test');
    expect(core.table.shardCount).toBe(0);
    expect(core.connections.size).toBe(0);
    expect(a.c.state).toBe('closed');
  });
});
