/**
 * What sits in a connection's outbound queue: a broadcast (one pushed diff, shared by every
 * subscriber it goes to and by the shard's resume ring), a gap notice or a refusal notice (one
 * subscriber's).
 *
 * A broadcast's gRPC frame is encoded once, when it is created; the same Buffer is written to
 * every gRPC subscriber. Same-process subscribers get a decoded view, built at most once.
 */
import {
  decodeMessage,
  encodeForward,
  encodeGap,
  encodeRefusal,
  GRPC_FRAME_HEADER_BYTES,
  type RefusalReason,
  type RefusedCall,
  type GapReason as WireGapReason,
} from '../protocol/index.js';
import type { InProcessMessage } from './types.js';

/** The gap reasons the broker sends (the wire's, without `unknown`). */
export type GapReason = Exclude<WireGapReason, 'unknown'>;

export class Broadcast {
  private local: InProcessMessage | undefined;

  private constructor(
    readonly shardId: string,
    readonly seqno: bigint,
    /** The forwarded gRPC frame (broker timestamp + the publisher's raw push_diff). */
    readonly frame: Buffer,
    /** The sending connection: never delivered back to it. */
    readonly sender: object,
    local: InProcessMessage | undefined,
  ) {
    this.local = local;
  }

  /**
   * On the prototype, not in each instance: a broadcast is made per push and sits in queues, so
   * it carries nothing it does not need (no receipt time: the connection stamps its queue).
   */
  get kind(): 'push' {
    return 'push';
  }

  /** A push as received: its frame is encoded here, once, for every subscriber. */
  static forward(
    shardId: string,
    seqno: bigint,
    /**
     * The publisher's raw `ProtoPushDiff` bytes. Not kept: it may alias a large inbound chunk,
     * and the frame holds a copy.
     */
    pushDiff: Uint8Array,
    /** Broker time at receipt, ms since the Unix epoch (the forwarded `timestamp`). */
    timestampMs: number,
    sender: object,
    local?: { diff: Uint8Array; originTimestampMs: number | undefined },
  ): Broadcast {
    return new Broadcast(
      shardId,
      seqno,
      encodeForward(pushDiff, timestampMs, true),
      sender,
      local === undefined
        ? undefined
        : {
            kind: 'push',
            shardId,
            seqno,
            diff: local.diff,
            originTimestampMs: local.originTimestampMs,
            timestampMs,
          },
    );
  }

  /**
   * A frame replayed from the resume ring (a copy the ring handed over), forwarded with its
   * original broker timestamp (decoded only for a same-process subscriber: `toMessage`).
   */
  static resumed(shardId: string, seqno: bigint, frame: Uint8Array, sender: object): Broadcast {
    return new Broadcast(
      shardId,
      seqno,
      Buffer.from(frame.buffer, frame.byteOffset, frame.length),
      sender,
      undefined,
    );
  }

  get bytes(): number {
    return this.frame.length;
  }

  /** The decoded message for same-process subscribers (decoded at most once). */
  toMessage(): InProcessMessage {
    if (this.local === undefined) {
      // Checked at the edge when received, so this cannot fail; check the kind anyway.
      const m = decodeMessage(this.frame.subarray(GRPC_FRAME_HEADER_BYTES));
      const push = m.kind === 'push' ? m : undefined;
      this.local = {
        kind: 'push',
        shardId: this.shardId,
        seqno: this.seqno,
        diff: push?.diff ?? new Uint8Array(0),
        originTimestampMs: push?.originTimestampMs,
        timestampMs: push?.timestampMs ?? 0,
      };
    }
    return this.local;
  }
}

export class GapItem {
  readonly kind = 'gap';
  private encoded: Buffer | undefined;
  constructor(
    readonly shardId: string,
    readonly reason: GapReason,
    readonly fromSeqno: bigint,
    readonly dropped: number,
    readonly timestampMs: number,
  ) {}

  get frame(): Buffer {
    this.encoded ??= encodeGap(
      this.shardId,
      this.reason,
      this.fromSeqno,
      this.dropped,
      this.timestampMs,
      true,
    );
    return this.encoded;
  }

  get bytes(): number {
    return 64 + this.shardId.length;
  }

  toMessage(): InProcessMessage {
    return {
      kind: 'gap',
      shardId: this.shardId,
      reason: this.reason,
      fromSeqno: this.fromSeqno,
      dropped: this.dropped,
    };
  }
}

/**
 * Extension: the broker refused one subscribe or push of `shardId` and keeps the stream open
 * (sent only to a client that speaks extensions; a reference client's stream is ended instead).
 */
export class RefusalItem {
  readonly kind = 'refused';
  readonly frame: Buffer;
  constructor(
    /** The id as the client sent it (so that it can match its own subscription). */
    readonly shardId: string,
    readonly reason: Exclude<RefusalReason, 'unknown'>,
    readonly detail: string,
    timestampMs: number,
    /** The refused call (a shard id breaking the rule is refused for either). */
    readonly call: Exclude<RefusedCall, 'unknown'>,
  ) {
    this.frame = encodeRefusal(shardId, reason, detail, timestampMs, true, call);
  }

  get bytes(): number {
    return this.frame.length;
  }

  toMessage(): InProcessMessage {
    return {
      kind: 'refused',
      shardId: this.shardId,
      reason: this.reason,
      detail: this.detail,
      call: this.call,
    };
  }
}

export type OutItem = Broadcast | GapItem | RefusalItem;
