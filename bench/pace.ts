/**
 * The pacing of the benchmarks' publishers (`broker-client.ts` for our broker,
 * `fanout-nats-client.ts` for nats-server): how many messages each wake-up writes, in how many
 * writes, and when the next wake-up is, so that both systems see the same arrival pattern.
 *
 * - By default every 1 ms tick writes everything due by then in one write (the throughput
 *   ladders of `bench broker` and `bench fanout`).
 * - `spread`: one message per write at evenly spaced times (the e2e writers' commits, the
 *   reference load): about one message per wake-up of the server.
 * - `spread` with `burstMs` N: the same offered rate, but every message due within one N ms slot
 *   is written at the slot's start, in one wake-up, still one write per message (what a
 *   commit tick that groups the shards' commits would offer).
 *
 * Every run writes exactly `totalMessages` (all that is still due once the duration is over).
 */
import { performance } from 'node:perf_hooks';

export interface Pacing {
  pushesPerSecond: number;
  durationMs: number;
  /** One message per write at evenly spaced times, not everything due per 1 ms tick in one. */
  spread?: boolean;
  /** With `spread`: slots of this many ms, each slot's messages written at its start. @default 0 */
  burstMs?: number;
}

/** What one wake-up does: `writes` writes of `perWrite` messages each, then sleeps until `nextMs`. */
export interface Wake {
  writes: number;
  perWrite: number;
  /** When to wake next, ms after the start. */
  nextMs: number;
}

/** Messages a run writes: the rate over the duration, rounded. */
export const totalMessages = (p: Pacing): number =>
  Math.round((p.durationMs / 1000) * p.pushesPerSecond);

/** Messages due by `ms` after the start (all of them once the duration is over). */
function dueBy(p: Pacing, ms: number, total: number): number {
  return ms >= p.durationMs ? total : Math.min(total, Math.floor((ms / 1000) * p.pushesPerSecond));
}

/** The wake-up at `elapsedMs` after the start, `sent` messages written so far. */
export function wake(p: Pacing, elapsedMs: number, sent: number): Wake {
  const total = totalMessages(p);
  const burstMs = p.burstMs ?? 0;
  if (p.spread === true && burstMs > 0) {
    const slotEndMs = (Math.floor(elapsedMs / burstMs) + 1) * burstMs;
    return { writes: dueBy(p, slotEndMs, total) - sent, perWrite: 1, nextMs: slotEndMs };
  }
  const due = dueBy(p, elapsedMs, total) - sent;
  if (p.spread === true) {
    const writes = Math.min(1, due);
    return { writes, perWrite: 1, nextMs: ((sent + writes + 1) / p.pushesPerSecond) * 1000 };
  }
  // A 1 ms timer, not a busy loop: the publisher must not steal a core from the others.
  return { writes: due > 0 ? 1 : 0, perWrite: due, nextMs: elapsedMs + 1 };
}

/**
 * Runs the pacing with real timers: `write(n)` writes n messages in one write; nothing is
 * written while `blocked()` (the socket or stream waits for `drain`). Resolves with the count.
 */
export async function pace(
  p: Pacing,
  write: (count: number) => void,
  blocked: () => boolean,
): Promise<number> {
  const total = totalMessages(p);
  const t0 = performance.now();
  let sent = 0;
  while (sent < total) {
    const w = wake(p, performance.now() - t0, sent);
    for (let k = 0; k < w.writes && !blocked(); k++) {
      write(w.perWrite);
      sent += w.perWrite;
    }
    const waitMs = Math.max(0, w.nextMs - (performance.now() - t0));
    await new Promise((r) => setTimeout(r, waitMs));
  }
  return sent;
}
