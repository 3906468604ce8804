/**
 * The clock shard state uses for wall time and timers, injected so that tests drive the poll
 * and retry schedules with no real sleeps.
 */
export interface Timer {
  /** Stops the timer if it has not fired. Idempotent. */
  cancel(): void;
}

export interface Clock {
  /** Wall time, milliseconds since the Unix epoch. */
  nowMs(): number;
  /** Calls `fn` once after `delayMs`. Real timers are `unref()`'d. */
  setTimer(fn: () => void, delayMs: number): Timer;
}

/** The system clock: `Date.now` and unref'd `setTimeout`. */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  setTimer(fn, delayMs) {
    const t = setTimeout(fn, Math.max(0, delayMs));
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

/** Sleeps `delayMs` on `clock`; rejects with the signal's reason if it aborts. */
export function sleep(clock: Clock, delayMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      timer.cancel();
      reject(signal?.reason);
    };
    const timer = clock.setTimer(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, delayMs);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
