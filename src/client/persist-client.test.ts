import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { counterModel } from '../../test/support/counter-model.js';
import { createMemoryConsensus } from '../consensus/index.js';
import { createFakeClock, type FakeClock } from '../util/index.js';
import { createPubSubClient } from './create-pubsub-client.js';
import { createFlags } from './flags.js';
import { createPersistClient } from './persist-client.js';
import type { PubSubClient } from './pubsub-client.js';
import type { ConnectOptions, InboundMessage, PubSubTransport } from './transport.js';

/** A transport that connects at once and records pushes and subscriptions. */
function recordingTransport() {
  const log: string[] = [];
  const conns: ConnectOptions[] = [];
  const transport: PubSubTransport = {
    kind: 'fake',
    async connect(opts) {
      conns.push(opts);
      return {
        subscribe: (s) => log.push(`sub ${s}`) && 1,
        unsubscribe: (s) => log.push(`unsub ${s}`) && 1,
        push: (s, n) => log.push(`push ${s} ${n}`) && 1,
        bufferedBytes: () => 0,
        close: () => {},
      };
    },
  };
  return { transport, log, conns };
}

/** Lets `clock`'s due timers and pending async work run until `pred` holds (no real sleeps). */
async function until(clock: FakeClock, pred: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await pred())) await clock.advance(0);
}

const reads = async (registry: Registry, reason: string) =>
  (
    await registry.getSingleMetric('persist_pubsub_state_consensus_reads_total')?.get()
  )?.values.find((v) => v.labels.reason === reason)?.value ?? 0;

const S = 's00000000-0000-0000-0000-0000000000a1';
const T = 's00000000-0000-0000-0000-0000000000a2';

describe('createPersistClient wiring', () => {
  it('subscribes per open shard, pushes commits, fetches on gaps and resyncs, and leaves a given pubsub open', async () => {
    const store = createMemoryConsensus();
    const rec = recordingTransport();
    const flags = createFlags();
    const registry = new Registry();
    const clock = createFakeClock();
    const pubsub = createPubSubClient(rec.transport, { flags, registry, clock });
    const client = await createPersistClient({
      consensus: store,
      pubsub,
      config: flags,
      registry,
      clock,
    });
    const h1 = await client.openShard(S, counterModel);
    const h2 = await client.openShard(S, counterModel);
    await until(clock, () => pubsub.status.state === 'connected');
    expect(rec.log.filter((l) => l.startsWith('sub'))).toEqual([`sub ${S}`]);

    await h1.update((s) => s + 1);
    expect(rec.log).toContain(`push ${S} 1`);
    flags.set({ persist_pubsub_push_diff_enabled: false });
    await h1.update((s) => s + 1);
    expect(rec.log).not.toContain(`push ${S} 2`);

    // A gap notice makes the client read Consensus for that shard at once.
    const gapReadsBefore = await reads(registry, 'gap_notice');
    rec.conns[0]!.onMessage({
      kind: 'gap',
      shardId: S,
      reason: 'slow_consumer',
      fromSeqno: 3n,
      bytes: 1,
    });
    await until(clock, async () => (await reads(registry, 'gap_notice')) === gapReadsBefore + 1);

    // Another writer commits; a pushed diff that does not decode is counted and answered by a
    // refetch, so the reader still gets there.
    const writer = await createPersistClient({ consensus: store });
    const wh = await writer.openShard(S, counterModel);
    await wh.update((s) => s + 10);
    rec.conns[0]!.onMessage({
      kind: 'diff',
      shardId: S,
      seqno: 3n,
      diff: new TextEncoder().encode('bad'), // not an envelope: counted and answered by a refetch
      originTimestampMs: undefined,
      brokerTimestampMs: undefined,
      bytes: 3,
    });
    expect((await h2.waitForSeqno(3n, { signal: AbortSignal.timeout(1000) })).state).toBe(12);

    h1.close();
    expect(rec.log.filter((l) => l.startsWith('unsub'))).toEqual([]);
    h2.close();
    expect(rec.log).toContain(`unsub ${S}`);

    // A reconnect fetches each open shard once, and only open ones.
    const th = await client.openShard(T, counterModel);
    const before = await reads(registry, 'reconnect');
    rec.conns[0]!.onClose(new Error('gone'));
    flags.set({ persist_pubsub_reconnect_backoff_ms: 0 });
    await until(clock, () => rec.conns.length === 2 && pubsub.status.state === 'connected');
    await until(clock, async () => (await reads(registry, 'reconnect')) === before + 1);
    th.close();

    await client.close();
    // The caller's pubsub client is theirs to close.
    expect(pubsub.status.state).toBe('connected');
    await pubsub.close();
    wh.close();
    await writer.close();
  });

  it('poll-schedule flags reach a reader that is already sleeping', async () => {
    const store = createMemoryConsensus();
    const clock = createFakeClock();
    const reader = await createPersistClient({
      consensus: store,
      clock,
      config: { persist_next_listen_batch_retryer_fixed_sleep_ms: 60_000 },
    });
    const writer = await createPersistClient({ consensus: store });
    const rh = await reader.openShard(S, counterModel);
    const wh = await writer.openShard(S, counterModel);
    let state: number | undefined;
    const waiting = rh.waitForSeqno(1n).then((v) => {
      state = v.state;
    });
    await wh.update((s) => s + 1);
    reader.flags.set({ persist_next_listen_batch_retryer_fixed_sleep_ms: 10 });
    // The running 60 s sleep is re-timed to 10 ms (±10% jitter) from when it began.
    await clock.advance(8);
    expect(state).toBeUndefined();
    await clock.advance(3);
    await waiting;
    expect(state).toBe(1);
    // A schedule shard state refuses leaves the flags and the schedule as they were.
    expect(() =>
      reader.flags.set({
        persist_next_listen_batch_retryer_initial_backoff_ms: 500,
        persist_next_listen_batch_retryer_clamp_ms: 100,
      }),
    ).toThrow(/must not exceed/);
    expect(reader.flags.get().persist_next_listen_batch_retryer_clamp_ms).toBe(16_000);
    rh.close();
    wh.close();
    await reader.close();
    await writer.close();
  });

  it('with no pubsub, readers poll', async () => {
    const store = createMemoryConsensus();
    const clock = createFakeClock();
    const reader = await createPersistClient({
      consensus: store,
      clock,
      config: { persist_next_listen_batch_retryer_fixed_sleep_ms: 10 },
    });
    const writer = await createPersistClient({ consensus: store, pubsub: 'none' });
    const rh = await reader.openShard(S, counterModel);
    const wh = await writer.openShard(S, counterModel);
    await wh.update((s) => s + 5);
    const waiting = rh.waitForSeqno(1n);
    await clock.advance(11); // the first poll sleep, 10 ms ±10%
    expect((await waiting).state).toBe(5);
    expect(reader.pubsub.transport).toBe('none');
    rh.close();
    wh.close();
    await reader.close();
    await writer.close();
  });

  it('applies a pushed diff inside the transport read that brought it; without onEvent, by batches', async () => {
    const store = createMemoryConsensus();
    // The writer's pushes, with their bytes.
    const pushed: InboundMessage[] = [];
    const writerPubsub = createPubSubClient({
      kind: 'fake',
      async connect() {
        return {
          subscribe: () => 1,
          unsubscribe: () => 1,
          push: (shardId, seqno, diff) =>
            pushed.push({
              kind: 'diff',
              shardId,
              seqno,
              diff,
              originTimestampMs: undefined,
              brokerTimestampMs: undefined,
              bytes: diff.byteLength,
            }) && 1,
          bufferedBytes: () => 0,
          close: () => {},
        };
      },
    });
    const writer = await createPersistClient({ consensus: store, pubsub: writerPubsub });
    const wh = await writer.openShard(S, counterModel);
    await until(createFakeClock(), () => writerPubsub.status.state === 'connected');
    await wh.update((s) => s + 7);

    const rec = recordingTransport();
    const clock = createFakeClock();
    const pubsub = createPubSubClient(rec.transport, { clock });
    const reader = await createPersistClient({ consensus: store, pubsub, clock });
    const rh = await reader.openShard(S, counterModel);
    await until(clock, () => pubsub.status.state === 'connected');
    expect(rh.seqno).toBe(1n);
    await wh.update((s) => s + 1);
    expect(pushed.length).toBe(2);
    rec.conns[0]!.onMessage(pushed[1]!);
    // Applied before any await.
    expect(rh.seqno).toBe(2n);
    expect(rh.state).toBe(8);
    rh.close();
    await reader.close();
    await pubsub.close();

    // A PubSubClient without onEvent (an application's own): consumed a batch at a time.
    const rec2 = recordingTransport();
    const clock2 = createFakeClock();
    const inner = createPubSubClient(rec2.transport, { clock: clock2 });
    const withoutSink: PubSubClient = {
      transport: inner.transport,
      get status() {
        return inner.status;
      },
      push: (...args) => inner.push(...args),
      subscribe: (...args) => inner.subscribe(...args),
      subscribedShards: () => inner.subscribedShards(),
      events: () => inner.events(),
      eventBatches: () => inner.eventBatches?.() ?? (inner.events() as never),
      statusChanges: () => inner.statusChanges(),
      close: () => inner.close(),
    };
    const batched = await createPersistClient({
      consensus: createMemoryConsensus(),
      pubsub: withoutSink,
      clock: clock2,
    });
    const bh = await batched.openShard(S, counterModel);
    await until(clock2, () => inner.status.state === 'connected');
    rec2.conns[0]!.onMessage(pushed[0]!);
    expect(bh.seqno).toBe(0n); // queued, taken a microtask later
    expect((await bh.waitForSeqno(1n)).state).toBe(7);
    bh.close();
    await batched.close();
    await inner.close();
    wh.close();
    await writer.close();
    await writerPubsub.close();
  });
});
