/**
 * The seam between the shared pubsub client logic (refcounted subscriptions, reconnect loop,
 * flags, metrics: `createPubSubClient`) and one wire: gRPC to the broker, the broker's
 * same-process delegate, NATS. A transport only knows how to open one connection and move
 * messages over it; everything about lifecycle lives in one place above it.
 */
import type { ReceivedDiff, ReceivedGap, ReceivedRefusal } from './pubsub-client.js';

/** A message a connection received, already parsed and validated. */
export type InboundMessage =
  | (ReceivedDiff & { bytes: number })
  | (ReceivedGap & { bytes: number })
  | (ReceivedRefusal & { bytes: number })
  | { kind: 'unknown'; bytes: number };

export interface ConnectOptions {
  /** Aborted when the attempt times out or the client closes/disables. */
  signal: AbortSignal;
  /**
   * Every message received on this connection, in order. Messages that arrived together (one
   * network read) are delivered synchronously one after another, within one event-loop turn,
   * so the caller can batch per turn.
   */
  onMessage(message: InboundMessage): void;
  /** The connection ended (called at most once, never after `close()`). */
  onClose(error: Error | undefined): void;
  /**
   * The peer is going away gracefully (HTTP/2 GOAWAY without an error: a draining broker) and
   * takes no new streams on this connection, but keeps serving this one until it ends it. The
   * client opens its next connection at once and moves there before this one ends
   * (make-before-break, docs/architecture.md "Client"). Called at most once per connection,
   * only once it is open (a GOAWAY that arrived while accepting is reported right after), never
   * after `close()` or `onClose`. A transport without such a signal never calls it.
   */
  onGoaway?(): void;
}

/** Bytes handed to the wire, or `false` if the message could not be sent. */
export type SendResult = number | false;

export interface PubSubConnection {
  subscribe(shardId: string, resumeAfterSeqno: bigint | undefined): SendResult;
  unsubscribe(shardId: string): SendResult;
  push(shardId: string, seqno: bigint, diff: Uint8Array, originTimestampMs: number): SendResult;
  /**
   * Bytes handed to this connection that the wire has not taken yet (queued for this turn's
   * write, or written but held back by flow control or a slow socket): the sender bound
   * (`persist_pubsub_client_sender_buffer_bytes`). A transport whose library buffers on its
   * own and never holds the caller back reports 0.
   */
  bufferedBytes(): number;
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
