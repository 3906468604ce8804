/**
 * The seam between the shared pubsub client logic (refcounted subscriptions, reconnect loop,
 * flags, metrics: `createPubSubClient`) and one wire: gRPC to the broker, the broker's
 * same-process delegate, NATS. A transport only knows how to open one connection and move
 * messages over it; everything about lifecycle lives in one place above it.
 */
import type { ReceivedDiff, ReceivedGap } from './pubsub-client.js';

/** A message a connection received, already parsed and validated. */
export type InboundMessage =
  | (ReceivedDiff & { bytes: number })
  | (ReceivedGap & { bytes: number })
  | { kind: 'unknown'; bytes: number };

export interface ConnectOptions {
  /** Aborted when the attempt times out or the client closes/disables. */
  signal: AbortSignal;
  /** Every message received on this connection, in order. */
  onMessage(message: InboundMessage): void;
  /** The connection ended (called at most once, never after `close()`). */
  onClose(error: Error | undefined): void;
}

/** Bytes handed to the wire, or `false` if the message could not be sent. */
export type SendResult = number | false;

export interface PubSubConnection {
  subscribe(shardId: string, resumeAfterSeqno: bigint | undefined): SendResult;
  unsubscribe(shardId: string): SendResult;
  push(shardId: string, seqno: bigint, diff: Uint8Array, originTimestampMs: number): SendResult;
  /**
   * Diffs handed to `push` while the wire is behind (for the sender channel bound): a transport
   * counts only pushes it must hold because the connection cannot keep up, not a burst it takes
   * within one event-loop turn.
   */
  pendingPushes(): number;
  /** Ends the connection; `onClose` is not called afterwards. Idempotent. */
  close(): void;
}

export interface PubSubTransport {
  /** A metric label and a log field: `grpc`, `in-process`, `nats`. */
  readonly kind: string;
  /**
   * Opens one connection. Resolves once it is usable (the client then re-sends subscriptions);
   * rejects if it cannot be opened or `signal` aborts first.
   */
  connect(options: ConnectOptions): Promise<PubSubConnection>;
}
