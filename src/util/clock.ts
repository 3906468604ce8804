/**
 * The clock every layer that waits takes: wall time, monotonic time and timers, injected so
 * that tests drive retry, poll, backoff and keepalive schedules with `createFakeClock` and no
 * real sleeps.
 */
export interface Timer {
  /** Stops the timer if it has not fired. Idempotent. */
  cancel(): void;
}

export interface TimerOptions {
  /**
   * Keep the process alive while the timer is pending. Only for a sleep that a caller is
   * awaiting (a writer's retry backoff, a Consensus retry): otherwise a script's `await` could
   * end with Node's "unsettled top-level await", or the process exit in the middle of a call.
   * Background timers (keepalives, reconnect loops, poll schedules) stay unref'd.
   * @default false (unref'd)
   */
  keepAlive?: boolean | undefined;
}

export interface Clock {
  /** Wall time, milliseconds since the Unix epoch (message timestamps, logs). */
  nowMs(): number;
  /** Monotonic time in milliseconds from an arbitrary origin, for durations. */
  monotonicMs(): number;
  /** Calls `fn` once after `delayMs` (negative counts as 0). Unref'd unless `keepAlive`. */
  setTimer(fn: () => void, delayMs: number, options?: TimerOptions): Timer;
}

/** The system clock: `Date.now`, `performance.now` and `setTimeout`, unref'd unless `keepAlive`. */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimer(fn, delayMs, options) {
    const t = setTimeout(fn, Math.max(0, delayMs));
    if (options?.keepAlive !== true) t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};
