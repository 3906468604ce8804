import { type Clock, systemClock } from './clock.js';

export interface SleepOptions {
  /** Ends the sleep early: the promise rejects with `abortError(signal)`. */
  signal?: AbortSignal | undefined;
  /** @default systemClock */
  clock?: Clock | undefined;
  /**
   * Keep the process alive while sleeping. A sleep that a call is awaiting keeps it alive (see
   * `TimerOptions.keepAlive`); a background loop's backoff passes `false`. @default true
   */
  keepAlive?: boolean | undefined;
  /** The rejection on abort. @default the signal's reason */
  abortError?: ((signal: AbortSignal) => unknown) | undefined;
}

/**
 * Resolves after `delayMs` on `clock`; rejects as soon as `signal` aborts (at once if it
 * already has), cancelling the timer. The abort listener is removed either way, so a
 * long-lived signal does not collect one listener per sleep.
 */
export function sleep(delayMs: number, options: SleepOptions = {}): Promise<void> {
  const { signal, clock = systemClock, keepAlive = true } = options;
  const abortError = options.abortError ?? ((s: AbortSignal) => s.reason);
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError(signal));
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      reject(abortError(signal as AbortSignal));
    };
    const timer = clock.setTimer(
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
      delayMs,
      { keepAlive },
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
