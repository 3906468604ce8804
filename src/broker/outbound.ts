/**
 * What sits in a connection's outbound queue: a broadcast (one pushed diff, shared by every
 * subscriber it goes to and by the shard's resume ring), a gap notice or a refusal notice (one
 * subscriber's).
 *
 * A broadcast's gRPC frame is not encoded when it is made: while the turn that received it
 * lasts, it is the broker's header (`writeForward`) in front of the publisher's raw `push_diff`,
 * a view of the inbound chunk, and the own server's flush and the resume ring copy it from
 * there, straight into their own memory (`copyFrame`): no buffer, no allocation and one copy
 * less per push. A broadcast still queued when its turn ends (a subscriber behind, a write
 * window, a carry-over) is encoded into a buffer of its own then (`detach`), so that a queue
 * never pins inbound chunks; so is one that any other writer asks for as a Buffer (`frame`).
 * Same-process subscribers get a decoded view, built at most once.
 */
import {
  decodeMessage,
  encodeForward,
  encodeGap,
  encodeRefusal,
  forwardLength,
  GRPC_FRAME_HEADER_BYTES,
  type RefusalReason,
  type RefusedCall,
  type GapReason as WireGapReason,
  writeForward,
} from '../protocol/index.js';
import type { InProcessMessage } from './types.js';

/** The gap reasons the broker sends (the wire's, without `unknown`). */
export type GapReason = Exclude<WireGapReason, 'unknown'>;

/**
 * One gRPC frame as a transport writes it: copied into the transport's own memory
 * (`copyFrame`, the own server's write slab), or as a Buffer (`frame`: a corked write, a
 * stream's flow-control queue, `node:http2`).
 */
export interface FrameSource {
  /** The frame's bytes, gRPC prefix included. */
  readonly frameLength: number;
  /** The frame as a Buffer of its own (a broadcast encodes it at the first call). */
  readonly frame: Buffer;
  /** Writes the frame's `frameLength` bytes into `out` at `at`. */
  copyFrame(out: Uint8Array, at: number): void;
}

export class Broadcast implements FrameSource {
  private local: InProcessMessage | undefined;
  /** The encoded frame, once made. */
  private encoded: Buffer | undefined;
  /**
   * Until `encoded` is made: the publisher's raw `ProtoPushDiff` (a view of the inbound chunk,
   * whose bytes do not change until the turn ends) and the broker timestamp to put before it.
   */
  private pushDiff: Uint8Array | undefined;
  private readonly timestampMs: number;
  /**
   * Queues holding this broadcast before it was written (the fan-out core counts, so that the
   * turn's end knows which ones to `detach`).
   */
  queued = 0;
  readonly frameLength: number;

  private constructor(
    readonly shardId: string,
    readonly seqno: bigint,
    encoded: Buffer | undefined,
    pushDiff: Uint8Array | undefined,
    timestampMs: number,
    /** The sending connection: never delivered back to it. */
    readonly sender: object,
    local: InProcessMessage | undefined,
  ) {
    this.encoded = encoded;
    this.pushDiff = pushDiff;
    this.timestampMs = timestampMs;
    this.frameLength =
      encoded !== undefined
        ? encoded.length
        : forwardLength(pushDiff?.length ?? 0, timestampMs, true);
    this.local = local;
  }

  /**
   * On the prototype, not in each instance: a broadcast is made per push and sits in queues, so
   * it carries nothing it does not need (no receipt time: the connection stamps its queue).
   */
  get kind(): 'push' {
    return 'push';
  }

  /**
   * A push as received, forwarded as the broker timestamp + the publisher's raw push_diff; the
   * frame is copied from `pushDiff` (not encoded) until the turn ends (`detach`).
   */
  static forward(
    shardId: string,
    seqno: bigint,
    /**
     * The publisher's raw `ProtoPushDiff` bytes. Referenced, not copied, until `detach` (or
     * `frame`): the caller does not change them before the end of the turn.
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
      undefined,
      pushDiff,
      timestampMs,
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
      undefined,
      0,
      sender,
      undefined,
    );
  }

  get bytes(): number {
    return this.frameLength;
  }

  get frame(): Buffer {
    if (this.encoded === undefined) {
      this.encoded = encodeForward(this.pushDiff!, this.timestampMs, true);
      this.pushDiff = undefined;
    }
    return this.encoded;
  }

  copyFrame(out: Uint8Array, at: number): void {
    if (this.encoded !== undefined) out.set(this.encoded, at);
    else writeForward(out, at, this.pushDiff!, this.timestampMs, true);
  }

  /** Encodes the frame into a buffer of its own and lets go of the inbound bytes. */
  detach(): void {
    if (this.encoded === undefined) void this.frame;
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

export class GapItem implements FrameSource {
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

  get frameLength(): number {
    return this.frame.length;
  }

  copyFrame(out: Uint8Array, at: number): void {
    out.set(this.frame, at);
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
export class RefusalItem implements FrameSource {
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

  get frameLength(): number {
    return this.frame.length;
  }

  copyFrame(out: Uint8Array, at: number): void {
    out.set(this.frame, at);
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
