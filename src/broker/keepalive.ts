/**
 * Per-session timers of the gRPC server: keepalive pings that find dead peers, and the optional
 * maximum connection age that sends clients elsewhere (as grpc-js `server.ts` keepalive and
 * `grpc.max_connection_age_ms`: ±10% jitter so that a fleet does not reconnect at once).
 *
 * Every timer comes from the injected `Clock` (unref'd), so the schedule is tested with the fake
 * clock; `stop()` clears them all and runs when the session closes.
 */
import type { Clock, Timer } from '../util/index.js';

/**
 * Pings fall due on a grid of this many ms of the clock's monotonic time, so that the sessions
 * whose pings are due in the same slot ping in one wake-up of the event loop (and their acks
 * mostly come back in one) instead of one wake-up each, spread over the interval: at 2,000 idle
 * sessions and a 30 s interval that is ~7 pings per wake-up instead of one. A ping goes at most
 * this much later than `keepaliveTimeMs`; small enough that even 10,000 sessions' pings in one
 * slot are a short burst.
 */
export const PING_SLOT_MS = 100;

/** The delay to the first slot at least `everyMs` from `nowMs`. */
export function pingDelayMs(nowMs: number, everyMs: number): number {
  return Math.ceil((nowMs + everyMs) / PING_SLOT_MS) * PING_SLOT_MS - nowMs;
}

/** What the timers need of an `Http2Session` (a fake in tests). */
export interface KeepaliveSession {
  readonly destroyed: boolean;
  readonly closed: boolean;
  ping(callback: (err: Error | null) => void): boolean;
  destroy(): void;
}

export interface KeepaliveOptions {
  /** Ping this often, in ms; 0 disables pings. */
  keepaliveTimeMs: number;
  /** Destroy the session if a ping is unanswered this long, in ms. */
  keepaliveTimeoutMs: number;
  /** Age out the session after this long (±10%), in ms; 0: never. */
  maxConnectionAgeMs: number;
  clock: Clock;
  /** In [0, 1), for the age jitter. @default Math.random */
  random?: () => number;
  /** A ping went unanswered (or failed): the session has been destroyed. */
  onDead?: () => void;
  /** The maximum age is reached: the caller sends GOAWAY and ends the session's calls. */
  onAgeOut: () => void;
}

/** Starts the timers of one session; the returned function stops them. Idempotent. */
export function watchSession(session: KeepaliveSession, o: KeepaliveOptions): () => void {
  let pingTimer: Timer | undefined;
  let deadline: Timer | undefined;
  let ageTimer: Timer | undefined;
  let stopped = false;
  const gone = () => stopped || session.destroyed || session.closed;

  const dead = () => {
    deadline = undefined;
    if (gone()) return;
    session.destroy();
    o.onDead?.();
  };

  const ping = () => {
    pingTimer = undefined;
    if (gone()) return;
    deadline = o.clock.setTimer(dead, o.keepaliveTimeoutMs);
    try {
      session.ping((err) => {
        deadline?.cancel();
        deadline = undefined;
        if (err !== null) {
          dead();
          return;
        }
        if (!gone()) pingTimer = schedule();
      });
    } catch {
      deadline.cancel();
      dead();
    }
  };

  function schedule(): Timer {
    return o.clock.setTimer(ping, pingDelayMs(o.clock.monotonicMs(), o.keepaliveTimeMs));
  }
  if (o.keepaliveTimeMs > 0) pingTimer = schedule();
  if (o.maxConnectionAgeMs > 0) {
    const age = o.maxConnectionAgeMs * (0.9 + 0.2 * (o.random ?? Math.random)());
    ageTimer = o.clock.setTimer(() => {
      ageTimer = undefined;
      if (!gone()) o.onAgeOut();
    }, age);
  }
  return () => {
    stopped = true;
    pingTimer?.cancel();
    deadline?.cancel();
    ageTimer?.cancel();
  };
}
