/**
 * The clock shard state uses for wall time and timers, injected so that tests drive the poll
 * and retry schedules with no real sleeps.
 */
export interface Timer {
  /** Stops the timer if it has not fired. Idempotent. */
  cancel(): void;
}

export interface TimerOptions {
  /**
   * Keep the process alive while the timer is pending. Only for a sleep that a caller is
   * awaiting (a writer's retry backoff, a poll while `waitForSeqno` is pending): otherwise a
   * script's `await` would end with Node's "unsettled top-level await". @default false (unref'd)
   */
  keepAlive?: boolean | undefined;
}

export interface Clock {
  /** Wall time, milliseconds since the Unix epoch. */
  nowMs(): number;
  /** Calls `fn` once after `delayMs`. Real timers are `unref()`'d unless `keepAlive`. */
  setTimer(fn: () => void, delayMs: number, options?: TimerOptions): Timer;
}

/** The system clock: `Date.now` and `setTimeout`, unref'd unless `keepAlive`. */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  setTimer(fn, delayMs, options) {
    const t = setTimeout(fn, Math.max(0, delayMs));
    if (options?.keepAlive !== true) t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

/**
 * Sleeps `delayMs` on `clock` (keeping the process alive: the caller awaits it); rejects with
 * the signal's reason if it aborts.
 */
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
    const timer = clock.setTimer(
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
      delayMs,
      { keepAlive: true },
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
