/**
 * One pubsub connection as the broker sees it: a gRPC `PubSub` stream or a same-process
 * connection. Holds the bounded outbound queue, the gaps owed to the subscriber, and the one
 * tagged state of its lifecycle (`open` → `ending` → `closed`, each transition logged at debug).
 *
 * The transport behind it is a `ConnectionSink`: the fan-out core never knows whether it writes
 * gRPC frames or calls a same-process callback.
 */
import type { Logger } from 'pino';
import type { Timer, WriteWindow } from '../util/index.js';
import type { CallStatus } from './grpc-status.js';
import type { CallCounts, RejectReason } from './metrics.js';
import type { GapReason, OutItem } from './outbound.js';

export interface ConnectionSink {
  /**
   * Writes a batch, oldest first. Returns false when the transport's buffer is full: the core
   * then waits for `FanoutCore.drained(conn)` before writing again.
   */
  write(items: OutItem[]): boolean;
  /** Ends the connection with a final status, gracefully (after what was written). */
  end(status: CallStatus): void;
  /** Ends it at once (nothing more is written); for stuck or destroyed connections. */
  abort(status: CallStatus): void;
}

export type ConnectionState = 'open' | 'ending' | 'closed';

/** How a transport (gRPC stream, same-process) admits and opens connections on the broker. */
export interface ConnectionOpener {
  /** Why a new connection is refused right now (not serving, at the limit), if it is. */
  refusal(): { reason: RejectReason; status: CallStatus } | undefined;
  /**
   * Opens one (after `refusal()` said none) and adds it to the fan-out core. `internal`: the
   * broker's own helper (the NATS bridge), which a drain does not wait for.
   */
  open(
    kind: 'grpc' | 'local',
    callerId: string,
    remoteAddress: string,
    sink: ConnectionSink,
    extensions: boolean,
    internal?: boolean,
  ): Connection;
}

export interface PendingGap {
  reason: GapReason;
  fromSeqno: bigint;
  dropped: number;
}

export class Connection {
  private stateValue: ConnectionState = 'open';
  /** Outbound items not yet handed to the transport. */
  queue: OutItem[] = [];
  queueBytes = 0;
  /**
   * `performance.now()` when the queue last became non-empty (the turn that received its oldest
   * item), for the fan-out latency histogram: one stamp per flush, none per diff.
   */
  queuedAt = 0;
  /** False after the transport said its buffer is full, until it drains. */
  writable = true;
  /** In the core's dirty list for the next flush. */
  scheduled = false;
  /** When the next flush may go (`--write-window-us`); set by the fan-out core's `add`. */
  window: WriteWindow | undefined;
  /** Diffs not delivered to this connection (queue full), for the admin listing. */
  dropped = 0;
  /** Gap notices owed, by shard (only for connections that understand extensions). */
  gaps: Map<string, PendingGap> | undefined;
  /** Set while the queue is full; fires the stuck-connection close. */
  stuckTimer: Timer | undefined;
  /**
   * Its caller label's call counts (`BrokerMetrics.callerCounts`), shared by every connection
   * of the label; set by the fan-out core's `add`.
   */
  callerCounts: CallCounts = { push: 0, subscribe: 0, unsubscribe: 0 };
  /** Final status, once ending. */
  status: CallStatus | undefined;

  constructor(
    /** Monotonic, for the admin listing's page order. */
    readonly seq: number,
    readonly connId: string,
    readonly callerId: string,
    /** The caller id's metric label (`other` beyond `maxCallerIdLabels`). */
    readonly callerLabel: string,
    readonly remoteAddress: string,
    readonly connectedAtMs: number,
    readonly kind: 'grpc' | 'local',
    public sink: ConnectionSink,
    readonly log: Logger,
    /**
     * Whether the peer understands our protocol extensions (gets gap notices). True for
     * same-process connections, for gRPC streams that sent `persist-pubsub-extensions: 1`, and
     * from the first subscribe carrying `resume_after_seqno`.
     */
    public extensions: boolean,
  ) {}

  get state(): ConnectionState {
    return this.stateValue;
  }

  transition(to: ConnectionState, why: string): void {
    if (this.stateValue === to) return;
    this.log.debug({ from: this.stateValue, to, why }, 'connection state');
    this.stateValue = to;
  }
}
