import { describe, expect, it } from 'vitest';
import { createFakeClock } from './fake-clock.js';

describe('createFakeClock', () => {
  it('fires timers in time order, ties in the order set, moving wall and monotonic time', async () => {
    const clock = createFakeClock(1000);
    const fired: string[] = [];
    clock.setTimer(() => fired.push(`b@${clock.nowMs()}`), 20);
    clock.setTimer(() => fired.push(`a@${clock.nowMs()}`), 10);
    clock.setTimer(() => fired.push(`c@${clock.nowMs()}`), 20);
    expect(clock.monotonicMs()).toBe(0);
    await clock.advance(15);
    expect(fired).toEqual(['a@1010']);
    expect(clock.nowMs()).toBe(1015);
    expect(clock.monotonicMs()).toBe(15);
    await clock.advance(5);
    expect(fired).toEqual(['a@1010', 'b@1020', 'c@1020']);
    expect(clock.pending()).toBe(0);
  });

  it('cancel is idempotent and a cancelled timer never fires', async () => {
    const clock = createFakeClock();
    let fired = 0;
    const t = clock.setTimer(() => fired++, 5);
    t.cancel();
    t.cancel();
    expect(clock.pending()).toBe(0);
    await clock.advance(10);
    expect(fired).toBe(0);
  });

  it('lets async chains between timers run: a timer set by a fired one fires in the same advance', async () => {
    const clock = createFakeClock();
    const at: number[] = [];
    const loop = async () => {
      for (let i = 0; i < 3; i++) {
        await new Promise<void>((r) => clock.setTimer(r, 10));
        at.push(clock.monotonicMs());
      }
    };
    const done = loop();
    await clock.advance(30);
    await done;
    expect(at).toEqual([10, 20, 30]);
  });

  it('next jumps to the next timer; runAll drains, and refuses a timer that re-arms forever', async () => {
    const clock = createFakeClock();
    expect(await clock.next()).toBe(false);
    let fired = 0;
    clock.setTimer(() => fired++, 500);
    expect(await clock.next()).toBe(true);
    expect(clock.monotonicMs()).toBe(500);
    clock.setTimer(() => clock.setTimer(() => fired++, 1), 1);
    expect(await clock.runAll()).toBe(2);
    expect(fired).toBe(2);
    const rearm = () => {
      clock.setTimer(rearm, 1000);
    };
    rearm();
    await expect(clock.runAll(5)).rejects.toThrow(/pending after 5 fired/);
  });
});
