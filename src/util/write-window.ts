/**
 * The write window: how a sender spaces its writes so that frames made close together in time
 * share one write (one syscall, one HTTP/2 DATA frame, one wake-up of the peer) instead of
 * paying a wake-up each. Used by the broker's outbound flush (per connection) and by the gRPC
 * client's sender flush.
 *
 * - Leading edge: a request after the writer was idle for at least the window goes out at
 *   once, through the caller's own end-of-turn flush (`soon`), exactly as with no window.
 * - Within the window since the last write, the request waits for the window's end (one
 *   timer per writer, not per frame), and whatever was queued by then goes in one write
 *   (`flush`).
 * - Window 0 (the default everywhere): every request goes out at once.
 *
 * The cost is latency, at most one window per frame, paid only by frames that follow another
 * write closely. Node's timers fire in whole milliseconds: a wait shorter than 1 ms lasts about
 * 1 ms.
 */
import type { Clock, Timer } from './clock.js';

export interface WriteWindowOptions {
  /** The window, in µs; 0 disables. A function is read at every request (a live flag). */
  windowUs: number | (() => number);
  clock: Clock;
  /**
   * Writes at once: the caller's end-of-turn flush (e.g. its `setImmediate`). May be called
   * more than once before it runs; the caller coalesces.
   */
  soon: () => void;
  /** Writes what is queued, at the window's end. */
  flush: () => void;
}

export interface WriteWindow {
  /** Something was queued: writes it at once, or at the window's end. */
  request(): void;
  /** A write went out now (every write, whichever path made it). */
  wrote(): void;
  /** Whether a flush waits for the window's end. */
  readonly waiting: boolean;
  /** Drops a pending window-end flush. Idempotent. */
  cancel(): void;
}

export function createWriteWindow(options: WriteWindowOptions): WriteWindow {
  const { windowUs, clock, soon, flush } = options;
  let lastWriteMs = Number.NEGATIVE_INFINITY;
  let timer: Timer | undefined;
  const fire = (): void => {
    timer = undefined;
    flush();
  };
  return {
    request() {
      if (timer !== undefined) return;
      const us = typeof windowUs === 'function' ? windowUs() : windowUs;
      const waitMs = us <= 0 ? 0 : lastWriteMs + us / 1000 - clock.monotonicMs();
      if (waitMs <= 0) soon();
      else timer = clock.setTimer(fire, waitMs);
    },
    wrote() {
      lastWriteMs = clock.monotonicMs();
    },
    get waiting() {
      return timer !== undefined;
    },
    cancel() {
      timer?.cancel();
      timer = undefined;
    },
  };
}
