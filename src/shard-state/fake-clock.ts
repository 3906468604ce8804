import type { Clock, Timer } from './clock.js';

/**
 * A manual clock for tests: time moves only through `advance`, which fires due timers in time
 * order and lets promise callbacks run between them.
 */
export interface FakeClock extends Clock {
  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): Promise<void>;
  /** Moves time to the next pending timer and fires it; false if none is pending. */
  next(): Promise<boolean>;
  /** How many timers are pending. */
  pending(): number;
}

interface Entry {
  at: number;
  order: number;
  fn: () => void;
  cancelled: boolean;
}

/** Lets queued promise callbacks and I/O-free async chains settle. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

export function createFakeClock(startMs = 1_700_000_000_000): FakeClock {
  let now = startMs;
  let order = 0;
  const entries: Entry[] = [];
  const due = (limit: number): Entry | undefined => {
    let best: Entry | undefined;
    for (const e of entries) {
      if (e.cancelled || e.at > limit) continue;
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
  return {
    nowMs: () => now,
    setTimer(fn, delayMs): Timer {
      const e: Entry = { at: now + Math.max(0, delayMs), order: order++, fn, cancelled: false };
      entries.push(e);
      return {
        cancel() {
          e.cancelled = true;
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
    async next() {
      await settle();
      const e = due(Number.POSITIVE_INFINITY);
      if (e === undefined) return false;
      fire(e);
      await settle();
      return true;
    },
    pending: () => entries.filter((e) => !e.cancelled).length,
  };
}
