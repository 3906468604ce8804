import type { Clock } from '../util/index.js';

/** `clock` with a count of its timers that fired: the wake-ups a real process would have. */
export function countingClock(clock: Clock): { clock: Clock; wakes: () => number } {
  let wakes = 0;
  return {
    clock: {
      nowMs: () => clock.nowMs(),
      monotonicMs: () => clock.monotonicMs(),
      setTimer: (fn, delayMs, options) =>
        clock.setTimer(
          () => {
            wakes++;
            fn();
          },
          delayMs,
          options,
        ),
    },
    wakes: () => wakes,
  };
}
