import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { counterModel } from '../../test/support/counter-model.js';
import { createMemoryConsensus } from '../consensus/index.js';
import { createFakeClock } from '../util/index.js';
import { BackgroundQueue } from './background-queue.js';
import { DEFAULT_SHARD_STATE_CONFIG } from './config.js';
import { ShardStateError } from './errors.js';
import { createShardStateMetrics } from './metrics.js';
import { createTestConsensus } from './test-consensus.test-support.js';
import type { PublishEvent } from './types.js';
import { type WriterHost, WriterLoop } from './writer-loop.js';

const model = counterModel;

function setup() {
  const consensus = createTestConsensus(createMemoryConsensus());
  const clock = createFakeClock(0);
  const registry = new Registry();
  const published: PublishEvent[] = [];
  let readError: unknown;
  let reads = 0;
  const host: WriterHost<number> & { seqno: bigint; state: number } = {
    shardId: 's1',
    seqno: 0n,
    state: 0,
    closed: false,
    applyCommitted(seqno, state) {
      host.seqno = seqno;
      host.state = state;
    },
    async readAfterMismatch() {
      reads++;
      return readError;
    },
    publish: (e) => published.push(e),
  };
  const writer = new WriterLoop(host, {
    consensus,
    model,
    clock,
    random: () => 0.5,
    logger: pino({ level: 'silent' }),
    metrics: createShardStateMetrics(registry, () => 0),
    config: () => DEFAULT_SHARD_STATE_CONFIG,
    background: new BackgroundQueue(),
  });
  const commits = async (outcome: string) =>
    ((await registry.getSingleMetric('persist_pubsub_state_commits_total')?.get())?.values ?? [])
      .filter((v) => v.labels.outcome === outcome)
      .reduce((a, v) => a + v.value, 0);
  return {
    consensus,
    clock,
    host,
    writer,
    published,
    commits,
    reads: () => reads,
    failReads(err: unknown) {
      readError = err;
    },
  };
}

describe('writer loop', () => {
  it('commits at seqno + 1, applies it, publishes the diff without the rollup', async () => {
    const t = setup();
    const r = await t.writer.update((s) => s + 5, undefined);
    expect(r).toEqual({ outcome: 'committed', seqno: 1n, state: 5, attempts: 1 });
    expect(t.host.seqno).toBe(1n);
    expect(t.published.map((p) => [p.shardId, p.seqno, p.commitTimeMs])).toEqual([['s1', 1n, 0]]);
    expect(await t.commits('committed')).toBe(1);
    expect((await t.writer.update((s) => s, undefined)).outcome).toBe('noop');
    expect(await t.commits('noop')).toBe(1);
  });

  it('counts an unavailable compare-and-set once, and retries it after the backoff', async () => {
    const t = setup();
    t.consensus.casFaults.push('unavailable');
    const p = t.writer.update((s) => s + 1, undefined);
    await t.clock.advance(3);
    expect(t.consensus.casCalls.length).toBe(1);
    await t.clock.advance(1);
    expect(await p).toMatchObject({ outcome: 'committed', attempts: 2 });
    expect(await t.commits('unavailable')).toBe(1);
    expect(await t.commits('error')).toBe(0);
    expect(await t.commits('committed')).toBe(1);
  });

  it('a lost compare-and-set reads the winner and retries; a corrupt log is reported', async () => {
    const t = setup();
    t.consensus.casFaults.push('mismatch');
    const p = t.writer.update((s) => s + 1, undefined);
    await t.clock.advance(4);
    expect(await p).toMatchObject({ outcome: 'committed', attempts: 2 });
    expect(t.reads()).toBe(1);
    expect(await t.commits('mismatch')).toBe(1);

    t.consensus.casFaults.push('mismatch');
    const corrupt = new ShardStateError('corrupt_log', 'injected');
    t.failReads(corrupt);
    await expect(t.writer.update((s) => s + 1, undefined)).rejects.toBe(corrupt);
  });

  it('an indeterminate error re-reads: landed counts as committed, once', async () => {
    const t = setup();
    t.consensus.casFaults.push('indeterminate_after_write');
    expect(await t.writer.update((s) => s + 1, undefined)).toMatchObject({
      outcome: 'committed',
      attempts: 1,
    });
    expect(await t.commits('indeterminate')).toBe(1);
    expect(await t.commits('committed')).toBe(1);
  });

  it('an abort ends a sleeping writer and its timer', async () => {
    const t = setup();
    t.consensus.casFaults.push('mismatch', 'mismatch');
    const ac = new AbortController();
    const p = t.writer.update((s) => s + 1, ac.signal);
    await t.clock.advance(4);
    expect(t.consensus.casCalls.length).toBe(2);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'aborted' });
    expect(t.clock.pending()).toBe(0);
  });
});
