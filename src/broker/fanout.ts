/**
 * The fan-out core: subscriptions, broadcasts, bounded queues, gap notices, resume. It knows
 * connections only through `ConnectionSink`, so it is tested with no network.
 *
 * Semantics (reference: Materialize persist pubsub server, docs/architecture.md "Broker"):
 * - A push goes to every connection subscribed to its shard except its sender; nothing is
 *   replayed to late subscribers, except on an explicit resume (extension).
 * - Subscribe/unsubscribe are idempotent and O(1); a closed connection loses all its
 *   subscriptions and empty shard entries disappear.
 * - A publisher never waits. Each connection has a queue bounded in messages and bytes
 *   (`BrokerLimits.maxQueueMessages`/`maxQueueBytes`, where the reference has 25 messages); a
 *   diff that does not fit is dropped for that subscriber and counted
 *   (`dropped_diffs_total{reason="queue_full"}`). A subscriber that understands extensions then
 *   gets one gap notice per shard (`SLOW_CONSUMER`, lowest missed seqno, count) as soon as its
 *   queue has been written out. A queue that stays full for `stuckConnectionTimeoutMs` closes
 *   the connection with RESOURCE_EXHAUSTED.
 * - Writes are coalesced: every queue touched during one event-loop turn is flushed once, in a
 *   `setImmediate`, as one transport write per connection; a queue that reaches half its limit
 *   (or 256 KiB) within a turn is written at once, so a burst never drops for a subscriber whose
 *   transport keeps up. With a write window (`writeWindowUs`, `src/util/write-window.ts`) a gRPC
 *   connection written less than the window ago waits for the window's end, so the diffs of
 *   several turns share one write.
 * - Writes are budgeted: one write takes at most `FLUSH_QUANTUM_ITEMS` items and
 *   `FLUSH_QUANTUM_BYTES` of a queue, and one turn writes at most `TURN_BUDGET_WRITES` items more
 *   than it queued; what is left is written in the next turns, oldest connection first, so that
 *   a backlog (every queue written out when a subscriber's socket drains) is written a slice per
 *   turn, not in one synchronous run. While such a carry-over is left, `overBudget()` is true:
 *   the `own` server reads no more until the writes have caught up.
 */
import { performance } from 'node:perf_hooks';
import { type Clock, createWriteWindow } from '../util/index.js';
import type { Connection } from './connection.js';
import { type CallStatus, GrpcStatus } from './grpc-status.js';
import { type BrokerMetrics, PUSH_TIME_SAMPLE_EVERY } from './metrics.js';
import { Broadcast, GapItem, type GapReason, type OutItem, RefusalItem } from './outbound.js';
import { createResumeStore, type ResumeStore } from './resume-ring.js';
import { createSubscriptionTable, type SubscriptionTable } from './subscription-table.js';
import type { BrokerFlags, BrokerLimits } from './types.js';

export interface FanoutCore {
  readonly table: SubscriptionTable<Connection>;
  readonly resume: ResumeStore;
  readonly connections: ReadonlyMap<string, Connection>;
  readonly flags: BrokerFlags;
  add(conn: Connection): void;
  /**
   * A push from `sender`. `pushDiff` is the raw ProtoPushDiff (forwarded verbatim), read again
   * until the end of this turn (copied into the writes and the resume ring from there, not
   * copied at once): its bytes must not change before then. `local` carries the decoded fields
   * when the sender is in-process.
   */
  push(
    sender: Connection,
    shardId: string,
    seqno: bigint,
    pushDiff: Uint8Array,
    local?: { diff: Uint8Array; originTimestampMs: number | undefined },
  ): void;
  /** Returns an error status if a limit refuses the subscription. */
  subscribe(conn: Connection, shardId: string, resumeAfterSeqno?: bigint): CallStatus | undefined;
  /**
   * Queues a refusal notice of one subscribe or push for `conn` (which speaks extensions),
   * instead of ending its stream. A full queue drops it (counted, as any diff).
   */
  refuse(
    conn: Connection,
    shardId: string,
    reason: RefusalItem['reason'],
    detail: string,
    call: RefusalItem['call'],
  ): void;
  unsubscribe(conn: Connection, shardId: string): void;
  /**
   * Sends a gap notice (`resume_unavailable`) for `shardId` to every subscriber that
   * understands extensions: diffs may have been lost upstream (the NATS bridge after an outage).
   */
  notifyGap(shardId: string, fromSeqno: bigint): void;
  /** The transport can take writes again. */
  drained(conn: Connection): void;
  /** Ends a connection with a status: graceful (`end`) or at once (`abort`). */
  end(conn: Connection, status: CallStatus, how: 'end' | 'abort'): void;
  /** The transport is gone: forget the connection. Idempotent. */
  remove(conn: Connection, why: string): void;
  /**
   * True once this turn has queued `TURN_BUDGET_DELIVERIES` items, or while the writes of an
   * earlier turn are carried over (`TURN_BUDGET_WRITES`): a transport then stops reading and asks
   * again at the next turn (see `TURN_BUDGET_DELIVERIES`).
   */
  overBudget(): boolean;
  /** Queue totals, for gauges. */
  queued(): { messages: number; bytes: number };
  /** Stops timers. */
  dispose(): void;
}

/** The fan-out latency histogram records one flush in this many (its quantiles stay true). */
export const FANOUT_LATENCY_SAMPLE_EVERY = 8;
/**
 * Items queued in one turn after which the `own` HTTP/2 server stops reading until the next turn
 * (`own-h2-server.ts`, `readPaused`), so that a backlog read in one go (the socket's whole buffer
 * after the broker was descheduled: thousands of diffs) is handled, flushed and written in slices
 * of about a millisecond, not in one synchronous run that holds every diff and its frame until
 * the end: at fan-out 1 such runs were 12-27 ms on a CPU, their diffs promoted and collected by
 * mark-compacts. A turn costs ~4 µs per item at fan-out 1 (read, decode, queue, flush, write), so
 * 1,024 still made runs of 3.7-5.6 ms; 256 keeps them under ~2.5 ms (bench/results/notes.md).
 */
export const TURN_BUDGET_DELIVERIES = 256;
/**
 * The most items and bytes of one connection's queue handed to its transport in one write; the
 * rest waits for the next turn. 60 KiB with their DATA headers fit one region of the own server's
 * write slab (`write-slab.ts`, 64 KiB), so a slice is one copied write, not a corked one per frame.
 */
export const FLUSH_QUANTUM_ITEMS = 256;
export const FLUSH_QUANTUM_BYTES = 60 * 1024;
/**
 * Items written to transports in one turn beyond those the turn queued, after which the turn's
 * remaining flushes go to the next turn (first in line). A turn always may write what it queued,
 * so that writes keep pace with reads that no budget pauses (`node:http2`, TLS; same-process
 * publishers; the NATS bridge) and a busy connection gets several slices in a turn; what the
 * budget bounds is a backlog: before, the flush after a subscriber's socket drained wrote every
 * connection's whole queue in one run, 13k items and 5 ms on a CPU at fan-out 10
 * (bench/results/notes.md). At ~0.4 µs per item written, 1,024 more are ~0.5 ms.
 */
export const TURN_BUDGET_WRITES = 1024;

function immediate(run: () => void): () => void {
  const h = setImmediate(run);
  return () => clearImmediate(h);
}

export function createFanoutCore(options: {
  limits: BrokerLimits;
  flags: BrokerFlags;
  metrics: BrokerMetrics;
  /** Wall time for the forwarded timestamps, ms since the Unix epoch. */
  now: () => number;
  /** For the stuck-connection and write-window timers. */
  clock: Clock;
  /**
   * A gRPC connection written less than this long ago waits for the window's end before its
   * next write, in µs (`src/util/write-window.ts`). 0: every turn's diffs are written at once.
   * @default 0
   */
  writeWindowUs?: number | undefined;
  /** A connection was removed (the broker's drain waits on this). */
  onRemoved?: (() => void) | undefined;
  /**
   * Runs `flush` once at the end of this event-loop turn (after its I/O), returning its cancel;
   * tests inject their own.
   * @default setImmediate
   */
  deferTurn?: ((flush: () => void) => () => void) | undefined;
}): FanoutCore {
  const { limits, flags, metrics, now, clock } = options;
  const deferTurn = options.deferTurn ?? immediate;
  const writeWindowUs = options.writeWindowUs ?? 0;
  const { stats } = metrics;
  const table = createSubscriptionTable<Connection>();
  const resume = createResumeStore({
    ringSize: limits.resumeRingSize,
    maxTotalBytes: limits.maxResumeBytes,
  });
  const connections = new Map<string, Connection>();

  // Half a queue, or 256 KiB, is written at once instead of waiting for the end of the turn.
  const eagerMessages = Math.max(1, Math.floor(limits.maxQueueMessages / 2));
  const eagerBytes = Math.max(1, Math.min(256 * 1024, Math.floor(limits.maxQueueBytes / 2)));
  let latencyCountdown = 0;
  /** Connections to flush at the end of the turn, in order (a carry-over first). */
  let dirty: Connection[] = [];
  /** Cancels the scheduled `flushAll`. */
  let flushScheduled: (() => void) | undefined;
  /** Items written since the last `flushAll` ended (eager writes in the I/O phase count too). */
  let writtenThisTurn = 0;
  /** The last `flushAll` left flushes for the next turn: reads wait (`overBudget`). */
  let carried = false;
  /**
   * The broadcasts made since the last `flushAll`: those still queued when it ends are detached
   * from the inbound bytes they reference (`Broadcast.detach`), so that no queue pins a chunk.
   */
  const turnBroadcasts: (Broadcast | undefined)[] = [];
  let turnBroadcastCount = 0;

  /**
   * `performance.now()` at the first enqueue since the last `flushAll`: every diff read in one
   * I/O phase shares it as its receipt time (they were read in one go, and the flush that writes
   * them runs after all of them), so a diff pays no clock read of its own. Reset by `flushAll`,
   * which taking it always schedules.
   */
  let turnStart = -1;
  function receivedNow(): number {
    if (turnStart < 0) {
      turnStart = performance.now();
      flushScheduled ??= deferTurn(flushAll);
    }
    return turnStart;
  }
  /**
   * Wall time (`now()`) at the first push since the last `flushAll`, the forwarded timestamp of
   * every diff of the turn, for the same reason (one clock read per turn, not per push: ~2 % of
   * the broker's CPU at fan-out 1). Reset by `flushAll`.
   */
  let turnWallMs = -1;
  function wallNow(): number {
    if (turnWallMs < 0) {
      turnWallMs = now();
      flushScheduled ??= deferTurn(flushAll);
    }
    return turnWallMs;
  }
  let pushTimeCountdown = 0;
  /** Items queued since the last `flushAll`. */
  let queuedThisTurn = 0;

  function schedule(conn: Connection): void {
    if (conn.scheduled || !conn.writable) return;
    if (conn.window === undefined) flushSoon(conn);
    else conn.window.request();
  }

  /** In this turn's flush. */
  function flushSoon(conn: Connection): void {
    if (conn.scheduled) return;
    conn.scheduled = true;
    dirty.push(conn);
    flushScheduled ??= deferTurn(flushAll);
  }

  /** Items the turn may write: what it queued (so writes never fall behind reads), and more. */
  const turnLimit = () => queuedThisTurn + TURN_BUDGET_WRITES;

  /**
   * The turn's flushes, a slice per connection per pass, passes in order while the turn may write
   * more (`turnLimit`; at least one connection's slice); the connections not reached, then those
   * written only in part, are first in the next turn's.
   */
  function flushAll(): void {
    flushScheduled = undefined;
    turnStart = -1;
    turnWallMs = -1;
    const limit = turnLimit();
    queuedThisTurn = 0;
    for (let first = true; ; first = false) {
      const batch = dirty;
      dirty = [];
      let i = 0;
      while (i < batch.length && ((first && i === 0) || writtenThisTurn < limit)) {
        flush(batch[i++]!);
      }
      if (i < batch.length) {
        dirty = batch.slice(i).concat(dirty);
        break;
      }
      // Another pass over those written in part, while the turn may write more.
      if (dirty.length === 0 || writtenThisTurn >= limit) break;
    }
    writtenThisTurn = 0;
    detachQueued();
    // What this turn left (a part of a queue re-added by `flush`, or connections not reached).
    carried = dirty.length > 0;
    if (carried) flushScheduled ??= deferTurn(flushAll);
  }

  /** Detaches the turn's broadcasts a queue still holds (a subscriber behind, a carry-over). */
  function detachQueued(): void {
    const made = turnBroadcasts;
    const n = turnBroadcastCount;
    turnBroadcastCount = 0;
    for (let i = 0; i < n; i++) {
      const b = made[i]!;
      if (b.queued > 0) b.detach();
      // The array is kept from turn to turn (no backing store regrown per turn), its slots not.
      made[i] = undefined;
    }
  }

  /**
   * The oldest items of `conn`'s queue, at most `FLUSH_QUANTUM_ITEMS` and `FLUSH_QUANTUM_BYTES`
   * (at least one item), taken off the queue.
   */
  function takeSlice(conn: Connection): OutItem[] {
    const queue = conn.queue;
    if (queue.length <= FLUSH_QUANTUM_ITEMS && conn.queueBytes <= FLUSH_QUANTUM_BYTES) {
      conn.queue = [];
      conn.queueBytes = 0;
      return queue;
    }
    let n = 0;
    let bytes = 0;
    while (n < queue.length && n < FLUSH_QUANTUM_ITEMS) {
      const b = queue[n]!.bytes;
      if (n > 0 && bytes + b > FLUSH_QUANTUM_BYTES) break;
      bytes += b;
      n++;
    }
    conn.queueBytes -= bytes;
    return queue.splice(0, n);
  }

  function flush(conn: Connection): void {
    conn.scheduled = false;
    if (conn.state !== 'open' || !conn.writable) return;
    if (conn.queue.length > 0) {
      const items = takeSlice(conn);
      writtenThisTurn += items.length;
      const oldest = items[0]!;
      let ok: boolean;
      try {
        ok = conn.sink.write(items);
      } catch (err) {
        conn.log.warn({ err }, 'transport write failed');
        end(conn, { code: GrpcStatus.INTERNAL, message: 'write failed' }, 'abort');
        return;
      }
      // Written (copied, or kept by the transport as a Buffer of its own): out of this queue.
      for (let i = 0; i < items.length; i++) {
        const item = items[i]!;
        if (item instanceof Broadcast) item.queued--;
      }
      // Sampled: a prom-client observe allocates and hashes labels, half a µs per flush. A
      // slice after the first is timed from the queue's oldest receipt too (an upper bound).
      if (oldest instanceof Broadcast && --latencyCountdown <= 0) {
        latencyCountdown = FANOUT_LATENCY_SAMPLE_EVERY;
        metrics.fanoutLatency.observe((performance.now() - conn.queuedAt) / 1000);
      }
      conn.window?.wrote();
      if (!ok) conn.writable = false;
      // The rest of the queue, in the next turn (or after the drain).
      else if (conn.queue.length > 0) flushSoon(conn);
    }
    if (conn.stuckTimer !== undefined) {
      conn.stuckTimer.cancel();
      conn.stuckTimer = undefined;
    }
    // The subscriber can receive again: tell it what it missed, after what was queued before.
    if (conn.gaps !== undefined && conn.gaps.size > 0 && conn.writable && conn.queue.length === 0) {
      const ts = now();
      const notices: OutItem[] = [];
      for (const [shardId, gap] of conn.gaps) {
        if (!table.isSubscribed(conn, shardId)) continue;
        notices.push(new GapItem(shardId, gap.reason, gap.fromSeqno, gap.dropped, ts));
        metrics.gapNotice(gap.reason);
      }
      conn.gaps = undefined;
      if (notices.length > 0) {
        try {
          if (!conn.sink.write(notices)) conn.writable = false;
          conn.window?.wrote();
        } catch (err) {
          conn.log.warn({ err }, 'transport write failed');
          end(conn, { code: GrpcStatus.INTERNAL, message: 'write failed' }, 'abort');
        }
      }
    }
  }

  function recordGap(conn: Connection, shardId: string, reason: GapReason, seqno: bigint): void {
    if (!conn.extensions) return;
    conn.gaps ??= new Map();
    const gap = conn.gaps.get(shardId);
    if (gap === undefined) {
      conn.gaps.set(shardId, {
        reason,
        fromSeqno: seqno,
        dropped: reason === 'resume_unavailable' ? 0 : 1,
      });
    } else {
      if (seqno < gap.fromSeqno) gap.fromSeqno = seqno;
      if (reason !== 'resume_unavailable') gap.dropped++;
      if (gap.reason !== 'slow_consumer') gap.reason = reason;
    }
  }

  function stuck(conn: Connection): void {
    conn.stuckTimer = undefined;
    if (conn.state !== 'open') return;
    conn.log.warn(
      { queueMessages: conn.queue.length, queueBytes: conn.queueBytes, dropped: conn.dropped },
      'closing a connection whose queue stayed full',
    );
    end(
      conn,
      {
        code: GrpcStatus.RESOURCE_EXHAUSTED,
        message: `outbound queue full for ${limits.stuckConnectionTimeoutMs} ms: the subscriber is not reading`,
      },
      'abort',
    );
  }

  /** Enqueues one item; false (and counted) if the queue is full. */
  function enqueue(conn: Connection, item: OutItem, bytes: number): boolean {
    if (
      conn.queue.length >= limits.maxQueueMessages ||
      conn.queueBytes + bytes > limits.maxQueueBytes
    ) {
      stats.drops.queue_full++;
      conn.dropped++;
      if (item instanceof Broadcast) recordGap(conn, item.shardId, 'slow_consumer', item.seqno);
      if (conn.stuckTimer === undefined) {
        conn.stuckTimer = clock.setTimer(() => stuck(conn), limits.stuckConnectionTimeoutMs);
      }
      return false;
    }
    // The oldest item's receipt, for the fan-out latency histogram.
    if (conn.queue.length === 0) conn.queuedAt = receivedNow();
    // The turn's end resets the budget even if nothing is written (a queue not writable).
    if (++queuedThisTurn === TURN_BUDGET_DELIVERIES) flushScheduled ??= deferTurn(flushAll);
    conn.queue.push(item);
    conn.queueBytes += bytes;
    if (item instanceof Broadcast) item.queued++;
    if (
      conn.kind === 'grpc' &&
      conn.writable &&
      (conn.queue.length >= eagerMessages || conn.queueBytes >= eagerBytes) &&
      writtenThisTurn < turnLimit()
    ) {
      // A burst within one turn: write now rather than let a healthy subscriber's queue fill
      // (a slice, within the turn's budget: `flushAll` writes the rest).
      // Never for same-process connections: their callback must not run inside a push.
      flush(conn);
    } else {
      schedule(conn);
    }
    return true;
  }

  function end(conn: Connection, status: CallStatus, how: 'end' | 'abort'): void {
    if (conn.state !== 'open') return;
    conn.status = status;
    conn.transition('ending', status.message);
    conn.stuckTimer?.cancel();
    conn.stuckTimer = undefined;
    conn.window?.cancel();
    if (how === 'end' && conn.writable && conn.queue.length > 0) {
      // Write what is queued before the status (graceful).
      const items = conn.queue;
      conn.queue = [];
      conn.queueBytes = 0;
      try {
        conn.sink.write(items);
      } catch {
        how = 'abort';
      }
    }
    conn.queue = [];
    conn.queueBytes = 0;
    if (how === 'end') conn.sink.end(status);
    else conn.sink.abort(status);
  }

  function remove(conn: Connection, why: string): void {
    if (conn.state === 'closed') return;
    const t0 = performance.now();
    conn.stuckTimer?.cancel();
    conn.stuckTimer = undefined;
    conn.window?.cancel();
    conn.queue = [];
    conn.queueBytes = 0;
    conn.gaps = undefined;
    table.removeConnection(conn);
    connections.delete(conn.connId);
    conn.transition('closed', why);
    stats.opSeconds.connection_cleanup += (performance.now() - t0) / 1000;
    options.onRemoved?.();
  }

  return {
    table,
    resume,
    connections,
    flags,
    add(conn) {
      connections.set(conn.connId, conn);
      conn.callerCounts = metrics.callerCounts(conn.callerLabel);
      // Same-process subscribers pay no syscall per write: no window for them.
      if (writeWindowUs > 0 && conn.kind === 'grpc') {
        conn.window = createWriteWindow({
          windowUs: writeWindowUs,
          clock,
          soon: () => flushSoon(conn),
          flush: () => flush(conn),
        });
      }
    },
    push(sender, shardId, seqno, pushDiff, local) {
      // Sampled: one push in PUSH_TIME_SAMPLE_EVERY is timed, and counted that many times.
      const timed = --pushTimeCountdown <= 0;
      const t0 = timed ? performance.now() : 0;
      stats.calls.push++;
      sender.callerCounts.push++;
      if (!flags.forwardPushes) {
        stats.drops.not_forwarding++;
        const subs = table.subscribers(shardId);
        if (subs !== undefined) {
          for (const conn of subs) {
            if (conn !== sender && conn.extensions) {
              recordGap(conn, shardId, 'not_forwarding', seqno);
              schedule(conn);
            }
          }
        }
        return;
      }
      const b = Broadcast.forward(shardId, seqno, pushDiff, wallNow(), sender, local);
      turnBroadcasts[turnBroadcastCount++] = b;
      const bytes = b.bytes;
      // The ring copies the frame: it keeps no broadcast alive (see resume-ring.ts).
      resume.record(shardId, seqno, b, sender);
      const subs = table.subscribers(shardId);
      let sent = 0;
      if (subs !== undefined) {
        for (const conn of subs) {
          if (conn !== sender && enqueue(conn, b, bytes)) sent++;
        }
      }
      stats.broadcastedDiffs += sent;
      stats.broadcastedBytes += sent * bytes;
      if (timed) {
        pushTimeCountdown = PUSH_TIME_SAMPLE_EVERY;
        stats.opSeconds.push += ((performance.now() - t0) / 1000) * PUSH_TIME_SAMPLE_EVERY;
      }
    },
    subscribe(conn, shardId, resumeAfterSeqno) {
      const t0 = performance.now();
      stats.calls.subscribe++;
      conn.callerCounts.subscribe++;
      if (resumeAfterSeqno !== undefined) conn.extensions = true;
      if (!table.isSubscribed(conn, shardId)) {
        const mine = table.shardsOf(conn)?.size ?? 0;
        if (mine >= limits.maxSubscriptionsPerConnection) {
          metrics.rejected('subscriptions');
          return {
            code: GrpcStatus.RESOURCE_EXHAUSTED,
            message: `too many subscriptions on one connection (limit ${limits.maxSubscriptionsPerConnection})`,
          };
        }
        table.subscribe(conn, shardId);
      }
      if (resumeAfterSeqno !== undefined) {
        const r = resume.replay(shardId, resumeAfterSeqno);
        for (const e of r.items) {
          if (e.sender === conn) continue;
          const b = Broadcast.resumed(shardId, e.seqno, e.frame, e.sender);
          if (enqueue(conn, b, b.bytes)) stats.resumeReplayed++;
        }
        if (r.kind === 'gap') {
          recordGap(conn, shardId, 'resume_unavailable', r.fromSeqno);
          schedule(conn);
        }
      }
      stats.opSeconds.subscribe += (performance.now() - t0) / 1000;
      return undefined;
    },
    refuse(conn, shardId, reason, detail, call) {
      if (conn.state !== 'open') return;
      const item = new RefusalItem(shardId, reason, detail, now(), call);
      enqueue(conn, item, item.bytes);
    },
    unsubscribe(conn, shardId) {
      const t0 = performance.now();
      stats.calls.unsubscribe++;
      conn.callerCounts.unsubscribe++;
      table.unsubscribe(conn, shardId);
      conn.gaps?.delete(shardId);
      stats.opSeconds.unsubscribe += (performance.now() - t0) / 1000;
    },
    notifyGap(shardId, fromSeqno) {
      const subs = table.subscribers(shardId);
      if (subs === undefined) return;
      for (const conn of subs) {
        if (!conn.extensions) continue;
        recordGap(conn, shardId, 'resume_unavailable', fromSeqno);
        schedule(conn);
      }
    },
    drained(conn) {
      if (conn.writable) return;
      conn.writable = true;
      schedule(conn);
      // schedule() skips an empty queue only if already scheduled; flush handles gaps too.
    },
    end,
    remove,
    overBudget: () => carried || queuedThisTurn >= TURN_BUDGET_DELIVERIES,
    queued() {
      let messages = 0;
      let bytes = 0;
      for (const c of connections.values()) {
        messages += c.queue.length;
        bytes += c.queueBytes;
      }
      return { messages, bytes };
    },
    dispose() {
      flushScheduled?.();
      flushScheduled = undefined;
      turnStart = -1;
      turnWallMs = -1;
      queuedThisTurn = 0;
      writtenThisTurn = 0;
      carried = false;
      turnBroadcasts.fill(undefined, 0, turnBroadcastCount);
      turnBroadcastCount = 0;
      for (const c of connections.values()) {
        c.stuckTimer?.cancel();
        c.stuckTimer = undefined;
        c.window?.cancel();
      }
    },
  };
}
