/**
 * What sits in a connection's outbound queue: a broadcast (one pushed diff, shared by every
 * subscriber it goes to and by the shard's resume ring) or a gap notice (one subscriber's).
 *
 * A broadcast's gRPC frame is encoded once, when it is created; the same Buffer is written to
 * every gRPC subscriber. Same-process subscribers get a decoded view, built at most once.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import {
  ProtoGapNoticeSchema,
  ProtoGapReason,
  ProtoPubSubMessageSchema,
} from '../gen/mz_persist_client/internal/service/pubsub_pb.js';
import type { InProcessMessage } from './types.js';
import { decodePushDiff, encodeForwardFrame, frameMessage } from './wire.js';

export type GapReason = 'slow_consumer' | 'resume_unavailable' | 'not_forwarding';

export class Broadcast {
  readonly kind = 'push';
  /** The forwarded gRPC frame (broker timestamp + the publisher's raw push_diff). */
  readonly frame: Buffer;
  private local: InProcessMessage | undefined;
  private readonly pushDiffBytes: number;

  constructor(
    readonly shardId: string,
    readonly seqno: bigint,
    /**
     * The publisher's raw `ProtoPushDiff` bytes. Not kept: it may alias a large inbound chunk,
     * and the frame holds a copy (see `pushDiff`).
     */
    pushDiff: Uint8Array,
    /** Broker time at receipt, ms since the Unix epoch (the forwarded `timestamp`). */
    readonly timestampMs: number,
    /** `performance.now()` at receipt, for the fan-out latency histogram. */
    readonly receivedAt: number,
    /** The sending connection: never delivered back to it. */
    readonly sender: object,
    local?: { diff: Uint8Array; originTimestampMs: number | undefined },
  ) {
    this.frame = encodeForwardFrame(pushDiff, timestampMs);
    this.pushDiffBytes = pushDiff.length;
    if (local !== undefined) {
      this.local = {
        kind: 'push',
        shardId,
        seqno,
        diff: local.diff,
        originTimestampMs: local.originTimestampMs,
        timestampMs,
      };
    }
  }

  get bytes(): number {
    return this.frame.length;
  }

  /** The publisher's raw push_diff: the tail of the frame. */
  get pushDiff(): Uint8Array {
    return this.frame.subarray(this.frame.length - this.pushDiffBytes);
  }

  /** The decoded message for same-process subscribers. */
  toMessage(): InProcessMessage {
    if (this.local === undefined) {
      // Parsed once at the edge already, so this cannot fail; keep the Result anyway.
      const r = decodePushDiff(this.pushDiff);
      this.local = {
        kind: 'push',
        shardId: this.shardId,
        seqno: this.seqno,
        diff: r.ok ? r.value.diff : new Uint8Array(0),
        originTimestampMs: r.ok ? r.value.originTimestampMs : undefined,
        timestampMs: this.timestampMs,
      };
    }
    return this.local;
  }
}

const GAP_REASON_PROTO: Record<GapReason, ProtoGapReason> = {
  slow_consumer: ProtoGapReason.SLOW_CONSUMER,
  resume_unavailable: ProtoGapReason.RESUME_UNAVAILABLE,
  not_forwarding: ProtoGapReason.NOT_FORWARDING,
};

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
    if (this.encoded === undefined) {
      const secs = Math.floor(this.timestampMs / 1000);
      const msg = create(ProtoPubSubMessageSchema, {
        timestamp: {
          secs: BigInt(secs),
          nanos: Math.round((this.timestampMs - secs * 1000) * 1e6),
        },
        message: {
          case: 'gap',
          value: create(ProtoGapNoticeSchema, {
            shardId: this.shardId,
            reason: GAP_REASON_PROTO[this.reason],
            fromSeqno: this.fromSeqno,
            dropped: BigInt(this.dropped),
          }),
        },
      });
      this.encoded = frameMessage(toBinary(ProtoPubSubMessageSchema, msg));
    }
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

export type OutItem = Broadcast | GapItem;
