/**
 * A fan-out core with fake sinks and a fake clock, for the tests of the parts built on it
 * (fan-out, listings, same-process connections).
 */
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { encodePushDiff } from '../protocol/index.js';
import { createFakeClock } from '../util/index.js';
import { Connection, type ConnectionOpener, type ConnectionSink } from './connection.js';
import { createFanoutCore, type FanoutCore } from './fanout.js';
import type { CallStatus } from './grpc-status.js';
import { type BrokerMetrics, createBrokerMetrics } from './metrics.js';
import { DEFAULT_LIMITS } from './options.js';
import type { OutItem } from './outbound.js';
import type { BrokerLimits, InProcessMessage } from './types.js';

export const silentLog = pino({ level: 'silent' });

/** Broker metrics on `registry` whose gauges read 0. */
export function createTestMetrics(registry: Registry): BrokerMetrics {
  const zero = () => 0;
  return createBrokerMetrics(
    registry,
    {
      activeConnections: zero,
      tcpConnections: zero,
      shards: zero,
      subscriptions: zero,
      queuedMessages: zero,
      queuedBytes: zero,
      resumeRingBytes: zero,
      authTokens: zero,
    },
    10,
  );
}

/**
 * A `ConnectionOpener` that opens connections on `core` (ids c1, c2, …), refusing every one
 * with `refusal` if given.
 */
export function createTestOpener(
  core: FanoutCore,
  refusal?: ReturnType<ConnectionOpener['refusal']>,
): ConnectionOpener {
  let seq = 0;
  return {
    refusal: () => refusal,
    open(kind, callerId, remote, sink, extensions) {
      seq++;
      const c = new Connection(
        seq,
        `c${seq}`,
        callerId,
        callerId,
        remote,
        0,
        kind,
        sink,
        silentLog,
        extensions,
      );
      core.add(c);
      return c;
    },
  };
}

export class FakeSink implements ConnectionSink {
  got: InProcessMessage[] = [];
  writes = 0;
  /** Items per write, in order. */
  batches: number[] = [];
  /** Called at each write (to see the order of writes across connections). */
  onWrite: ((items: number) => void) | undefined;
  accept = true;
  ended: CallStatus | undefined;
  aborted: CallStatus | undefined;
  write(items: OutItem[]): boolean {
    this.writes++;
    this.batches.push(items.length);
    this.onWrite?.(items.length);
    for (const it of items) this.got.push(it.toMessage());
    return this.accept;
  }
  end(status: CallStatus): void {
    this.ended = status;
  }
  abort(status: CallStatus): void {
    this.aborted = status;
  }
  pushes(): bigint[] {
    return this.got.flatMap((m) => (m.kind === 'push' ? [m.seqno] : []));
  }
  gaps() {
    return this.got.filter((m) => m.kind === 'gap');
  }
}

/**
 * The core's end-of-turn flushes by hand (`deferTurn`): `turn()` runs the callbacks deferred so
 * far, as one event-loop turn's `setImmediate`s would; those they defer wait for the next.
 */
export function createFakeTurns() {
  let queued: (() => void)[] = [];
  return {
    defer(run: () => void): () => void {
      let live = true;
      queued.push(() => {
        if (live) run();
      });
      return () => {
        live = false;
      };
    },
    /** Callbacks waiting for the next turn. */
    pending: () => queued.length,
    turn(): void {
      const now = queued;
      queued = [];
      for (const run of now) run();
    },
  };
}

export function setupFanout(
  limits: Partial<BrokerLimits> = {},
  writeWindowUs = 0,
  deferTurn?: (run: () => void) => () => void,
  now: () => number = () => 1000,
) {
  const registry = new Registry();
  const metrics = createTestMetrics(registry);
  const flags = { forwardPushes: true };
  const clock = createFakeClock();
  const core = createFanoutCore({
    limits: { ...DEFAULT_LIMITS, ...limits },
    flags,
    metrics,
    now,
    clock,
    writeWindowUs,
    deferTurn,
  });
  let seq = 0;
  const conn = (extensions = false, kind: 'grpc' | 'local' = 'grpc', callerLabel = 'test') => {
    const sink = new FakeSink();
    const c = new Connection(
      ++seq,
      `c${seq}`,
      callerLabel,
      callerLabel,
      'x',
      0,
      kind,
      sink,
      silentLog,
      extensions,
    );
    core.add(c);
    return { c, sink };
  };
  const push = (from: Connection, shardId: string, seqno: bigint) =>
    core.push(from, shardId, seqno, encodePushDiff(shardId, seqno, Uint8Array.of(1), undefined));
  return { core, conn, push, metrics, flags, registry, clock };
}
