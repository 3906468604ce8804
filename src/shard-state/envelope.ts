/**
 * The version envelope: what each Consensus entry of a shard holds and what pubsub carries
 * (`proto/persist_pubsub/state/v1/envelope.proto`). Parsed once here, at the edge, into a typed
 * value that the rest of shard state trusts.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { VersionEnvelopeSchema } from '../gen/persist_pubsub/state/v1/envelope_pb.js';

export interface Envelope {
  /** Always `seqnoTo - 1`. */
  seqnoFrom: bigint;
  seqnoTo: bigint;
  wallTimeMs: number;
  diff: Uint8Array;
  rollup: Uint8Array | undefined;
  model: string;
}

/** Why an envelope was refused. */
export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';
  /** `decode`: not an envelope of this model; `seqno`: an envelope for another seqno. */
  readonly reason: 'decode' | 'seqno';
  constructor(reason: 'decode' | 'seqno', message: string, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

export function encodeEnvelope(e: Envelope): Uint8Array {
  return toBinary(
    VersionEnvelopeSchema,
    create(VersionEnvelopeSchema, {
      seqnoFrom: e.seqnoFrom,
      seqnoTo: e.seqnoTo,
      wallTimeMs: BigInt(Math.max(0, Math.trunc(e.wallTimeMs))),
      diff: e.diff,
      ...(e.rollup === undefined ? {} : { rollup: e.rollup }),
      model: e.model,
    }),
  );
}

/**
 * Decodes and checks an envelope: it must be of `model`, at `expectedSeqno` if given, with
 * `seqnoFrom + 1 === seqnoTo`. Throws `EnvelopeError` otherwise.
 */
export function decodeEnvelope(bytes: Uint8Array, model: string, expectedSeqno?: bigint): Envelope {
  let pb: ReturnType<typeof fromBinary<typeof VersionEnvelopeSchema>>;
  try {
    pb = fromBinary(VersionEnvelopeSchema, bytes);
  } catch (err) {
    throw new EnvelopeError('decode', 'the envelope does not decode', { cause: err });
  }
  if (pb.model !== model) {
    throw new EnvelopeError(
      'decode',
      `the envelope is of model ${JSON.stringify(pb.model)}, not ${model}`,
    );
  }
  if (pb.seqnoTo < 1n || pb.seqnoFrom + 1n !== pb.seqnoTo) {
    throw new EnvelopeError('seqno', `bad seqno range ${pb.seqnoFrom}..${pb.seqnoTo}`);
  }
  if (expectedSeqno !== undefined && pb.seqnoTo !== expectedSeqno) {
    throw new EnvelopeError(
      'seqno',
      `the envelope is for seqno ${pb.seqnoTo}, not ${expectedSeqno}`,
    );
  }
  return {
    seqnoFrom: pb.seqnoFrom,
    seqnoTo: pb.seqnoTo,
    wallTimeMs: Number(pb.wallTimeMs),
    diff: pb.diff,
    rollup: pb.rollup,
    model: pb.model,
  };
}
