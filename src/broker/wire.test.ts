import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ProtoPubSubMessageSchema,
  ProtoPushDiffSchema,
} from '../gen/mz_persist_client/internal/service/pubsub_pb.js';
import {
  decodePushDiff,
  encodeForwardFrame,
  encodePushDiff,
  GRPC_FRAME_HEADER_BYTES,
  parseEnvelope,
} from './wire.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });

describe('parseEnvelope', () => {
  it('reads a push: shard id, seqno and the raw push_diff bytes', () => {
    const msg = create(ProtoPubSubMessageSchema, {
      timestamp: { secs: 5n, nanos: 6 },
      message: {
        case: 'pushDiff',
        value: {
          shardId: 's1',
          seqno: 2n ** 63n + 5n,
          diff: enc('abc'),
          originTimestamp: { secs: 1n },
        },
      },
    });
    const r = parseEnvelope(toBinary(ProtoPubSubMessageSchema, msg));
    if (!r.ok || r.value.kind !== 'push') throw new Error(JSON.stringify(r));
    expect(dec(r.value.shardId)).toBe('s1');
    expect(r.value.seqno).toBe(2n ** 63n + 5n);
    const inner = fromBinary(ProtoPushDiffSchema, r.value.pushDiff);
    expect(dec(inner.diff)).toBe('abc');
    expect(inner.originTimestamp?.secs).toBe(1n);
  });

  it('reads subscribe with and without resume_after_seqno, and unsubscribe', () => {
    const sub = parseEnvelope(
      toBinary(
        ProtoPubSubMessageSchema,
        create(ProtoPubSubMessageSchema, {
          message: { case: 'subscribe', value: { shardId: 'a' } },
        }),
      ),
    );
    expect(sub.ok && sub.value.kind === 'subscribe' && sub.value.resumeAfterSeqno).toBe(undefined);
    const res = parseEnvelope(
      toBinary(
        ProtoPubSubMessageSchema,
        create(ProtoPubSubMessageSchema, {
          message: { case: 'subscribe', value: { shardId: 'a', resumeAfterSeqno: 0n } },
        }),
      ),
    );
    expect(res.ok && res.value.kind === 'subscribe' && res.value.resumeAfterSeqno).toBe(0n);
    const un = parseEnvelope(
      toBinary(
        ProtoPubSubMessageSchema,
        create(ProtoPubSubMessageSchema, {
          message: { case: 'unsubscribe', value: { shardId: 'b' } },
        }),
      ),
    );
    expect(un.ok && un.value.kind === 'unsubscribe' && dec(un.value.shardId)).toBe('b');
    expect(parseEnvelope(new Uint8Array(0))).toEqual({ ok: true, value: { kind: 'empty' } });
  });

  it('rejects truncations, bad wire types and groups with a code, never a throw', () => {
    const good = toBinary(
      ProtoPubSubMessageSchema,
      create(ProtoPubSubMessageSchema, {
        message: { case: 'pushDiff', value: { shardId: 'sx', seqno: 300n, diff: enc('d') } },
      }),
    );
    for (let n = 1; n < good.length; n++) {
      const r = parseEnvelope(good.subarray(0, n));
      expect(r.ok).toBe(false);
    }
    expect(parseEnvelope(Uint8Array.of(0x10, 0x01))).toMatchObject({
      ok: false,
      code: 'bad_wire_type',
    });
    expect(parseEnvelope(Uint8Array.of(0x0b))).toMatchObject({ ok: false, code: 'bad_wire_type' });
    expect(parseEnvelope(Uint8Array.of(0x00))).toMatchObject({ ok: false, code: 'bad_field' });
    expect(parseEnvelope(Uint8Array.of(0x12, 0xff, 0xff, 0xff, 0xff, 0x7f))).toMatchObject({
      ok: false,
    });
    expect(parseEnvelope(Uint8Array.of(0x08, ...new Array(11).fill(0x80)))).toMatchObject({
      ok: false,
      code: 'bad_varint',
    });
    expect(parseEnvelope(Uint8Array.of(0x08, 0x80, 0x80))).toMatchObject({
      ok: false,
      code: 'truncated',
    });
  });

  it('fuzz: random bytes never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const r = parseEnvelope(bytes);
        expect(typeof r.ok).toBe('boolean');
        const d = decodePushDiff(bytes);
        expect(typeof d.ok).toBe('boolean');
      }),
      { numRuns: 5000 },
    );
  });

  it('fuzz: mutated valid messages never throw', () => {
    fc.assert(
      fc.property(
        fc.string(),
        u64,
        fc.uint8Array({ maxLength: 64 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        (shardId, seqno, diff, edits) => {
          const b = toBinary(
            ProtoPubSubMessageSchema,
            create(ProtoPubSubMessageSchema, {
              message: { case: 'pushDiff', value: { shardId, seqno, diff } },
            }),
          );
          for (const [i, v] of edits) if (b.length > 0) b[i % b.length] = v;
          parseEnvelope(b);
          decodePushDiff(b);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('property: agrees with the generated decoder on valid messages', () => {
    fc.assert(
      fc.property(fc.string(), u64, fc.uint8Array({ maxLength: 64 }), (shardId, seqno, diff) => {
        const bytes = toBinary(
          ProtoPubSubMessageSchema,
          create(ProtoPubSubMessageSchema, {
            message: { case: 'pushDiff', value: { shardId, seqno, diff } },
          }),
        );
        const r = parseEnvelope(bytes);
        if (!r.ok || r.value.kind !== 'push') throw new Error('not a push');
        expect(dec(r.value.shardId)).toBe(shardId);
        expect(r.value.seqno).toBe(seqno);
      }),
    );
  });
});

describe('encoding', () => {
  it('encodeForwardFrame: a gRPC frame of the broker timestamp + the raw push_diff', () => {
    const pd = toBinary(
      ProtoPushDiffSchema,
      create(ProtoPushDiffSchema, {
        shardId: 's9',
        seqno: 12n,
        diff: enc('xyz'),
        originTimestamp: { secs: 3n, nanos: 4 },
      }),
    );
    const frame = encodeForwardFrame(pd, 1_700_000_000_250.5);
    expect(frame[0]).toBe(0);
    expect(frame.readUInt32BE(1)).toBe(frame.length - GRPC_FRAME_HEADER_BYTES);
    const m = fromBinary(ProtoPubSubMessageSchema, frame.subarray(GRPC_FRAME_HEADER_BYTES));
    expect(m.timestamp?.secs).toBe(1_700_000_000n);
    expect(m.timestamp?.nanos).toBe(250_500_000);
    if (m.message.case !== 'pushDiff') throw new Error('not a push');
    expect(m.message.value.shardId).toBe('s9');
    expect(m.message.value.seqno).toBe(12n);
    expect(dec(m.message.value.diff)).toBe('xyz');
    expect(m.message.value.originTimestamp).toMatchObject({ secs: 3n, nanos: 4 });
  });

  it('property: encodePushDiff matches the generated encoder and decodePushDiff inverts it', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary-ascii' }),
        u64,
        fc.uint8Array({ maxLength: 300 }),
        fc.option(fc.integer({ min: 0, max: 4_000_000_000_000 })),
        (shardId, seqno, diff, origin) => {
          const ours = encodePushDiff(enc(shardId), seqno, diff, origin ?? undefined);
          const theirs = fromBinary(ProtoPushDiffSchema, ours);
          expect(theirs.shardId).toBe(shardId);
          expect(theirs.seqno).toBe(seqno);
          expect(Buffer.from(theirs.diff).equals(Buffer.from(diff))).toBe(true);
          const back = decodePushDiff(ours);
          if (!back.ok) throw new Error(back.detail);
          expect(back.value.seqno).toBe(seqno);
          expect(back.value.originTimestampMs).toBe(origin ?? undefined);
        },
      ),
    );
  });
});
