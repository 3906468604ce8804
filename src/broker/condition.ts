/**
 * Waiting for a condition on an event instead of polling it: the drain waits until the last
 * connection is gone (or a deadline), woken by `notify()` whenever a connection or session
 * closes. The deadline is a timer of the injected `Clock`.
 */
import type { Clock } from '../util/index.js';

export interface Condition {
  /** Something changed: re-check every pending `waitFor`. */
  notify(): void;
  /** Resolves once `done()` holds (checked now and on every `notify`) or after `timeoutMs`. */
  waitFor(done: () => boolean, timeoutMs: number): Promise<void>;
}

export function createCondition(clock: Clock): Condition {
  const waiters = new Set<() => void>();
  return {
    notify() {
      for (const check of [...waiters]) check();
    },
    waitFor(done, timeoutMs) {
      if (done()) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const finish = () => {
          waiters.delete(check);
          timer.cancel();
          resolve();
        };
        const check = () => {
          if (done()) finish();
        };
        const timer = clock.setTimer(finish, timeoutMs);
        waiters.add(check);
      });
    },
  };
}
