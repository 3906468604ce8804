import type { Clock, Timer } from './clock.js';

/**
 * A manual clock for tests: time moves only through `advance`, `next` and `runAll`, which fire
 * due timers in time order (ties in the order they were set) and let promise callbacks and
 * I/O-free async chains run between them. Wall and monotonic time move together.
 */
export interface FakeClock extends Clock {
  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): Promise<void>;
  /** Moves time to the next pending timer and fires it; false if none is pending. */
  next(): Promise<boolean>;
  /**
   * Fires pending timers, and those they set, until none is left; resolves with how many
   * fired. Throws after `limit` (a timer that re-arms itself, like a keepalive, never ends).
   * @default limit 1000
   */
  runAll(limit?: number): Promise<number>;
  /** How many timers are pending. */
  pending(): number;
}

interface Entry {
  at: number;
  order: number;
  fn: () => void;
}

/** Lets queued promise callbacks and I/O-free async chains settle. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

/** A fake clock whose wall time starts at `startMs` and monotonic time at 0. */
export function createFakeClock(startMs = 1_700_000_000_000): FakeClock {
  let now = startMs;
  let order = 0;
  const entries: Entry[] = [];
  const due = (limit: number): Entry | undefined => {
    let best: Entry | undefined;
    for (const e of entries) {
      if (e.at > limit) continue;
      if (best === undefined || e.at < best.at || (e.at === best.at && e.order < best.order)) {
        best = e;
      }
    }
    return best;
  };
  const fire = (e: Entry) => {
    entries.splice(entries.indexOf(e), 1);
    now = Math.max(now, e.at);
    e.fn();
  };
  const next = async (): Promise<boolean> => {
    await settle();
    const e = due(Number.POSITIVE_INFINITY);
    if (e === undefined) return false;
    fire(e);
    await settle();
    return true;
  };
  return {
    nowMs: () => now,
    monotonicMs: () => now - startMs,
    setTimer(fn, delayMs): Timer {
      const e: Entry = { at: now + Math.max(0, delayMs), order: order++, fn };
      entries.push(e);
      return {
        cancel() {
          const i = entries.indexOf(e);
          if (i >= 0) entries.splice(i, 1);
        },
      };
    },
    async advance(ms) {
      const target = now + ms;
      await settle();
      for (let e = due(target); e !== undefined; e = due(target)) {
        fire(e);
        await settle();
      }
      now = target;
      await settle();
    },
    next,
    async runAll(limit = 1000) {
      let fired = 0;
      while (await next()) {
        if (++fired >= limit && entries.length > 0) {
          throw new Error(`runAll: still ${entries.length} timer(s) pending after ${fired} fired`);
        }
      }
      return fired;
    },
    pending: () => entries.length,
  };
}
