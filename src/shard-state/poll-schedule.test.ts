import { describe, expect, it } from 'vitest';
import { createFakeClock } from '../util/index.js';
import { DEFAULT_SHARD_STATE_CONFIG, mergeConfig, type ShardStateConfig } from './config.js';
import { countingClock } from './counting-clock.test-support.js';
import { PollSchedule } from './poll-schedule.js';
import { TimerQueue } from './timer-queue.js';

function setup(partial: Partial<ShardStateConfig> = {}) {
  const clock = createFakeClock(0);
  let config = mergeConfig(DEFAULT_SHARD_STATE_CONFIG, { pollJitterRatio: 0, ...partial });
  const polls: number[] = [];
  let onPoll: () => void = () => {};
  const schedule = new PollSchedule(
    {
      clock,
      timers: new TimerQueue(clock, true),
      random: () => 0.5,
      config: () => config,
    },
    async () => {
      polls.push(clock.nowMs());
      onPoll();
    },
  );
  return {
    clock,
    polls,
    schedule,
    setConfig(p: Partial<ShardStateConfig>) {
      config = mergeConfig(config, p);
      schedule.configChanged();
    },
    onPoll(fn: () => void) {
      onPoll = fn;
    },
  };
}

describe('poll schedule', () => {
  it('polls after the first sleep, then on the doubling backoff while nothing changes', async () => {
    const t = setup();
    t.schedule.start();
    await t.clock.advance(3000);
    expect(t.polls).toEqual([1200, 1300, 1500, 1900, 2700]);
    expect(t.schedule.phase).toMatchObject({ kind: 'sleeping', attempt: 5 });
  });

  it('starts over on progress, without a new timer per progress', async () => {
    const t = setup();
    t.schedule.start();
    for (let i = 0; i < 10; i++) {
      await t.clock.advance(500);
      t.schedule.progress();
      // One timer at most, however often progress moves the deadline.
      expect(t.clock.pending()).toBe(1);
    }
    expect(t.polls).toEqual([]);
    await t.clock.advance(1199);
    expect(t.polls).toEqual([]);
    await t.clock.advance(1);
    expect(t.polls).toEqual([6200]);
  });

  it('progress during a poll starts a fresh first sleep', async () => {
    const t = setup();
    t.onPoll(() => t.schedule.progress());
    t.schedule.start();
    await t.clock.advance(1200);
    expect(t.polls).toEqual([1200]);
    expect(t.schedule.phase).toMatchObject({ kind: 'sleeping', attempt: 0, sleepStartMs: 1200 });
    await t.clock.advance(1200);
    expect(t.polls).toEqual([1200, 2400]);
  });

  it('idle lets the timer lapse; waiting again at once reuses it; stop cancels it', async () => {
    const t = setup();
    t.schedule.start();
    await t.clock.advance(100);
    t.schedule.idle();
    t.schedule.start();
    expect(t.clock.pending()).toBe(1);
    await t.clock.advance(1200);
    expect(t.polls).toEqual([1300]);
    t.schedule.idle();
    await t.clock.advance(5000);
    expect(t.polls).toEqual([1300]);
    expect(t.clock.pending()).toBe(0);
    t.schedule.start();
    t.schedule.stop();
    expect(t.clock.pending()).toBe(0);
    expect(t.schedule.phase).toEqual({ kind: 'idle' });
  });

  it('idle cancels a timer due later than one first sleep (a long backoff)', async () => {
    const t = setup();
    t.schedule.start();
    await t.clock.advance(1200 + 100 + 200 + 400 + 800 + 1600); // five empty polls
    expect(t.schedule.phase).toMatchObject({ kind: 'sleeping', attempt: 6 });
    t.schedule.idle(); // the next poll was 3.2 s away
    expect(t.clock.pending()).toBe(0);
  });

  it('re-times a running sleep under a new config at once', async () => {
    const t = setup();
    t.schedule.start();
    await t.clock.advance(100);
    t.setConfig({ pollFirstSleepMs: 150 });
    await t.clock.advance(49);
    expect(t.polls).toEqual([]);
    await t.clock.advance(1);
    expect(t.polls).toEqual([150]);
    t.setConfig({ pollInitialBackoffMs: 10 });
    await t.clock.advance(10);
    expect(t.polls).toEqual([150, 160]);
  });

  it('jitters each sleep by its draw', async () => {
    const clock = createFakeClock(0);
    const draws = [0, 1];
    const polls: number[] = [];
    const config = mergeConfig(DEFAULT_SHARD_STATE_CONFIG, { pollJitterRatio: 0.1 });
    const s = new PollSchedule(
      {
        clock,
        timers: new TimerQueue(clock, true),
        random: () => draws.shift() ?? 0.5,
        config: () => config,
      },
      async () => {
        polls.push(clock.nowMs());
      },
    );
    s.start();
    await clock.advance(1300);
    expect(polls).toEqual([1080, 1080 + 110]);
  });
  it('a hundred shards applying a diff every 670 ms never poll and wake the clock a few times a second', async () => {
    const clock = createFakeClock(0);
    const counting = countingClock(clock);
    const timers = new TimerQueue(counting.clock, true);
    const config = mergeConfig(DEFAULT_SHARD_STATE_CONFIG, { pollJitterRatio: 0.1 });
    let polls = 0;
    let draw = 0;
    const shards = Array.from(
      { length: 100 },
      () =>
        new PollSchedule(
          {
            clock: counting.clock,
            timers,
            random: () => (draw++ % 10) / 10,
            config: () => config,
          },
          async () => {
            polls++;
          },
        ),
    );
    for (const s of shards) s.start();
    // Every 10 ms a tenth of a round of shards applies a diff: each shard every 670 ms, as a
    // reader does at 1.5 commits per second; its wait is satisfied and it waits again at once.
    for (let step = 0; step < 1000; step++) {
      await clock.advance(10);
      for (let i = step % 67; i < shards.length; i += 67) {
        const s = shards[i] as PollSchedule;
        s.idle();
        s.start();
      }
    }
    expect(polls).toBe(0);
    // 10 s: each shard's deadline moved 15 times; a wake-up per shard per sleep would be ~900.
    expect(counting.wakes()).toBeLessThan(50);
  });
});
