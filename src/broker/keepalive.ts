/**
 * Per-session timers of the gRPC server: keepalive pings that find dead peers, and the optional
 * maximum connection age that sends clients elsewhere (as grpc-js `server.ts` keepalive and
 * `grpc.max_connection_age_ms`: ±10% jitter so that a fleet does not reconnect at once).
 *
 * Every timer comes from the injected `Clock` (unref'd), so the schedule is tested with the fake
 * clock; `stop()` clears them all and runs when the session closes.
 */
import type { Clock, Timer } from '../util/index.js';

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
        if (!gone()) pingTimer = o.clock.setTimer(ping, o.keepaliveTimeMs);
      });
    } catch {
      deadline.cancel();
      dead();
    }
  };

  if (o.keepaliveTimeMs > 0) pingTimer = o.clock.setTimer(ping, o.keepaliveTimeMs);
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
