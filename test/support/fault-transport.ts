/**
 * Message-level faults: a `PubSubTransport` wrapper that drops, duplicates, reorders and delays
 * what crosses it, in both directions (diffs received, pushes sent), and can cut a connection.
 *
 * Every decision is a pure function of the seed and the message's identity (direction, shard,
 * seqno, how many times this identity was seen), not of arrival interleaving, so a schedule
 * replays the same faults from its seed even though the machine's timing differs.
 */
import type {
  ConnectOptions,
  InboundMessage,
  PubSubConnection,
  PubSubTransport,
} from '../../src/client/index.js';

/** Probabilities of each fault per message; the rest is delivered as is. */
export interface MessageFaultRates {
  drop: number;
  duplicate: number;
  /** Held back until the next message of the connection passed it (or `maxDelayMs`). */
  reorder: number;
  /** Delivered after a random delay in `[1, maxDelayMs]`. */
  delay: number;
  maxDelayMs: number;
  /** Per received message: the connection is cut right after it. */
  cut: number;
}

export const NO_FAULTS: MessageFaultRates = {
  drop: 0,
  duplicate: 0,
  reorder: 0,
  delay: 0,
  maxDelayMs: 0,
  cut: 0,
};

export interface FaultCounts {
  dropped: number;
  duplicated: number;
  reordered: number;
  delayed: number;
  cut: number;
}

export interface FaultTransport extends PubSubTransport {
  readonly counts: Readonly<FaultCounts>;
  /** Changes the rates from now on (`NO_FAULTS` heals; delayed messages still land). */
  setRates(rates: MessageFaultRates): void;
  /** Messages held or delayed right now. */
  inFlight(): number;
}

type Fate = 'deliver' | 'drop' | 'duplicate' | 'reorder' | 'delay' | 'cut';

/** FNV-1a over the seed and a key, then a mulberry32 step: uniform in [0, 1). */
export function decide(seed: number, key: string): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  let t = (h + 0x6d2b79f5) >>> 0;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

function fateOf(r: MessageFaultRates, u: number): Fate {
  let acc = 0;
  for (const [fate, p] of [
    ['drop', r.drop],
    ['duplicate', r.duplicate],
    ['reorder', r.reorder],
    ['delay', r.delay],
    ['cut', r.cut],
  ] as const) {
    acc += p;
    if (u < acc) return fate;
  }
  return 'deliver';
}

/**
 * Wraps `inner`. `label` names this process/reader in the decision keys, so two readers under
 * one seed get different (but each reproducible) faults.
 */
export function createFaultTransport(
  inner: PubSubTransport,
  seed: number,
  label: string,
  initial: MessageFaultRates = NO_FAULTS,
): FaultTransport {
  let rates = initial;
  const counts: FaultCounts = { dropped: 0, duplicated: 0, reordered: 0, delayed: 0, cut: 0 };
  const seen = new Map<string, number>();
  let inFlight = 0;
  let connections = 0;

  const keyOf = (dir: string, conn: number, id: string): string => {
    const base = `${label}|${dir}|${id}`;
    const n = (seen.get(base) ?? 0) + 1;
    seen.set(base, n);
    // The connection number is part of the key only for cuts (see below), so that a resend
    // after a reconnect gets a fresh decision.
    return `${base}|${n}|${conn}`;
  };

  return {
    kind: `fault+${inner.kind}`,
    counts,
    setRates(next) {
      rates = next;
    },
    inFlight: () => inFlight,
    async connect(options: ConnectOptions): Promise<PubSubConnection> {
      const connNo = ++connections;
      let closed = false;
      let held: InboundMessage | undefined;
      let heldTimer: NodeJS.Timeout | undefined;
      const timers = new Set<NodeJS.Timeout>();
      let innerConn: PubSubConnection | undefined;

      const deliver = (m: InboundMessage): void => {
        if (!closed) options.onMessage(m);
      };
      const releaseHeld = (): void => {
        if (held === undefined) return;
        const m = held;
        held = undefined;
        if (heldTimer !== undefined) clearTimeout(heldTimer);
        heldTimer = undefined;
        inFlight--;
        deliver(m);
      };
      const later = (ms: number, fn: () => void): void => {
        inFlight++;
        const t = setTimeout(() => {
          timers.delete(t);
          inFlight--;
          fn();
        }, ms);
        t.unref();
        timers.add(t);
      };
      const stop = (): void => {
        closed = true;
        for (const t of timers) clearTimeout(t);
        inFlight -= timers.size;
        timers.clear();
        if (held !== undefined) {
          held = undefined;
          inFlight--;
        }
        if (heldTimer !== undefined) clearTimeout(heldTimer);
      };

      const onMessage = (m: InboundMessage): void => {
        if (closed) return;
        if (m.kind !== 'diff') {
          deliver(m);
          return;
        }
        const key = keyOf('in', connNo, `${m.shardId}/${m.seqno}`);
        const fate = fateOf(rates, decide(seed, key));
        const r = rates;
        // A held message goes out right after the next one: a swap.
        const wasHeld = held;
        if (fate !== 'reorder') held = undefined;
        switch (fate) {
          case 'drop':
            counts.dropped++;
            break;
          case 'duplicate':
            counts.duplicated++;
            deliver(m);
            deliver(m);
            break;
          case 'delay':
            counts.delayed++;
            later(1 + Math.floor(decide(seed, `${key}|ms`) * Math.max(1, r.maxDelayMs)), () =>
              deliver(m),
            );
            break;
          case 'reorder':
            if (wasHeld !== undefined) {
              // Two in a row: the older one goes now (after nothing), the new one waits.
              held = undefined;
              inFlight--;
              if (heldTimer !== undefined) clearTimeout(heldTimer);
              deliver(wasHeld);
            }
            counts.reordered++;
            held = m;
            inFlight++;
            heldTimer = setTimeout(releaseHeld, Math.max(1, r.maxDelayMs));
            heldTimer.unref();
            return;
          case 'cut':
            counts.cut++;
            deliver(m);
            if (wasHeld !== undefined) {
              held = wasHeld;
              releaseHeld();
            }
            stop();
            innerConn?.close();
            // Reported like a transport failure, asynchronously as a real one would be.
            setImmediate(() => options.onClose(new Error('fault injection: connection cut')));
            return;
          default:
            deliver(m);
        }
        if (wasHeld !== undefined) {
          held = wasHeld;
          releaseHeld();
        }
      };

      const conn = await inner.connect({
        signal: options.signal,
        onMessage,
        onClose: (err) => {
          if (closed) return;
          stop();
          options.onClose(err);
        },
      });
      innerConn = conn;
      return {
        subscribe: (shardId, resume) => conn.subscribe(shardId, resume),
        unsubscribe: (shardId) => conn.unsubscribe(shardId),
        push(shardId, seqno, diff, originTimestampMs) {
          if (closed) return false;
          const key = keyOf('out', connNo, `${shardId}/${seqno}`);
          const fate = fateOf({ ...rates, cut: 0, reorder: 0 }, decide(seed, key));
          if (fate === 'drop') {
            counts.dropped++;
            return diff.length; // the caller believes it went out: the wire lost it
          }
          if (fate === 'duplicate') {
            counts.duplicated++;
            conn.push(shardId, seqno, diff, originTimestampMs);
          }
          if (fate === 'delay') {
            counts.delayed++;
            later(1 + Math.floor(decide(seed, `${key}|ms`) * Math.max(1, rates.maxDelayMs)), () => {
              if (!closed) conn.push(shardId, seqno, diff, originTimestampMs);
            });
            return diff.length;
          }
          return conn.push(shardId, seqno, diff, originTimestampMs);
        },
        bufferedBytes: () => conn.bufferedBytes(),
        close() {
          stop();
          conn.close();
        },
      };
    },
  };
}
