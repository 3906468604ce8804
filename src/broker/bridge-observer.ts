/**
 * Wraps the fan-out core so a `BrokerObserver` (the NATS bridge) learns, synchronously and in
 * order, when a shard gains its first or loses its last local subscriber and when a push is
 * accepted for fan-out. The fan-out itself is unchanged: the wrapper only looks at the
 * subscription table before and after each call. A hook that throws is logged and ignored, so
 * an observer can never break the data plane.
 */
import type { Logger } from 'pino';
import type { Connection } from './connection.js';
import { BrokerError } from './errors.js';
import type { FanoutCore } from './fanout.js';
import type { BrokerObserver } from './types.js';

const HOOKS = ['shardActive', 'shardIdle', 'pushed', 'attached'] as const;

/** Checks `BrokerOptions.observer` once, at construction, naming the bad field. */
export function validateObserver(observer: unknown): BrokerObserver | undefined {
  if (observer === undefined) return undefined;
  if (typeof observer !== 'object' || observer === null) {
    throw new BrokerError('invalid_argument', 'BrokerOptions.observer must be an object');
  }
  for (const hook of HOOKS) {
    const fn = (observer as Record<string, unknown>)[hook];
    if (fn !== undefined && typeof fn !== 'function') {
      throw new BrokerError(
        'invalid_argument',
        `BrokerOptions.observer.${hook} must be a function`,
      );
    }
  }
  return observer as BrokerObserver;
}

/** Returns `fan` itself when there is no observer (zero cost), else a wrapper around it. */
export function observeFanout(
  fan: FanoutCore,
  observer: BrokerObserver | undefined,
  log: Logger,
): FanoutCore {
  if (observer === undefined) return fan;
  const call = (hook: string, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      log.warn({ err, hook }, 'broker observer hook threw');
    }
  };
  const active = (shardId: string): void => {
    if (observer.shardActive !== undefined) {
      call('shardActive', () => observer.shardActive?.(shardId));
    }
  };
  const idle = (shardId: string): void => {
    if (observer.shardIdle !== undefined) call('shardIdle', () => observer.shardIdle?.(shardId));
  };
  const has = (shardId: string): boolean => fan.table.subscribers(shardId) !== undefined;
  if (observer.attached !== undefined) {
    call('attached', () =>
      observer.attached?.({
        notifyGap: (shardId, fromSeqno = 0n) => fan.notifyGap(shardId, fromSeqno),
      }),
    );
  }

  return {
    get table() {
      return fan.table;
    },
    get resume() {
      return fan.resume;
    },
    get connections() {
      return fan.connections;
    },
    get flags() {
      return fan.flags;
    },
    add: (conn) => fan.add(conn),
    push(sender, shardId, seqno, pushDiff, local) {
      fan.push(sender, shardId, seqno, pushDiff, local);
      if (observer.pushed !== undefined && fan.flags.forwardPushes) {
        call('pushed', () =>
          observer.pushed?.({ shardId, seqno, pushDiff, connId: sender.connId }),
        );
      }
    },
    subscribe(conn, shardId, resumeAfterSeqno) {
      const before = has(shardId);
      const refused = fan.subscribe(conn, shardId, resumeAfterSeqno);
      if (!before && has(shardId)) active(shardId);
      return refused;
    },
    unsubscribe(conn, shardId) {
      const before = has(shardId);
      fan.unsubscribe(conn, shardId);
      if (before && !has(shardId)) idle(shardId);
    },
    refuse: (conn, shardId, reason, detail, call) =>
      fan.refuse(conn, shardId, reason, detail, call),
    notifyGap: (shardId, fromSeqno) => fan.notifyGap(shardId, fromSeqno),
    drained: (conn) => fan.drained(conn),
    end: (conn, status, how) => fan.end(conn, status, how),
    remove(conn: Connection, why: string) {
      const held = [...(fan.table.shardsOf(conn) ?? [])];
      fan.remove(conn, why);
      for (const shardId of held) if (!has(shardId)) idle(shardId);
    },
    overBudget: () => fan.overBudget(),
    queued: () => fan.queued(),
    dispose: () => fan.dispose(),
  };
}
