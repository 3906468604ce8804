import { fromBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtoPubSubMessageSchema } from '../gen/mz_persist_client/internal/service/pubsub_pb.js';
import { pushFrame, subscribeFrame, unsubscribeFrame } from './grpc-frames.js';

/** The message inside a frame, after checking its 5-byte prefix. */
function body(frame: Buffer): Uint8Array {
  expect(frame[0]).toBe(0);
  expect(frame.readUInt32BE(1)).toBe(frame.length - 5);
  return frame.subarray(5);
}

const decode = (frame: Buffer) => fromBinary(ProtoPubSubMessageSchema, body(frame));

/** What the generated schema makes of a ms timestamp we encoded. */
function ms(d: { secs: bigint; nanos: number } | undefined): number {
  return d === undefined ? 0 : Number(d.secs) * 1000 + d.nanos / 1e6;
}

const seqno = fc.oneof(
  fc.constantFrom(0n, 1n, 127n, 128n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n - 1n, 2n ** 64n - 1n),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
);
const timeMs = fc.oneof(
  fc.constantFrom(0, -5, Number.NaN, 1_700_000_000_123.5, 999.9999999),
  fc.double({ min: 0, max: 4e12, noNaN: true }),
);
const shardId = fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.constant(''));

describe('client gRPC frames, checked against the generated schema', () => {
  it('push_diff: shard id, seqno, diff and both timestamps', () => {
    fc.assert(
      fc.property(
        timeMs,
        shardId,
        seqno,
        fc.uint8Array({ maxLength: 300 }),
        timeMs,
        (ts, id, n, diff, origin) => {
          const m = decode(pushFrame(ts, id, n, diff, origin));
          expect(m.message.case).toBe('pushDiff');
          if (m.message.case !== 'pushDiff') return;
          expect(m.message.value.shardId).toBe(id.toWellFormed());
          expect(m.message.value.seqno).toBe(n);
          expect([...m.message.value.diff]).toEqual([...diff]);
          const clamp = (t: number) => (Number.isFinite(t) && t > 0 ? t : 0);
          expect(ms(m.timestamp)).toBeCloseTo(clamp(ts), 5);
          expect(ms(m.message.value.originTimestamp)).toBeCloseTo(clamp(origin), 5);
          expect(m.message.value.originTimestamp).toBeDefined();
        },
      ),
    );
  });

  it('subscribe with and without a resume seqno; unsubscribe', () => {
    fc.assert(
      fc.property(timeMs, shardId, fc.option(seqno, { nil: undefined }), (ts, id, resume) => {
        const s = decode(subscribeFrame(ts, id, resume));
        expect(s.message.case).toBe('subscribe');
        if (s.message.case !== 'subscribe') return;
        expect(s.message.value.shardId).toBe(id.toWellFormed());
        expect(s.message.value.resumeAfterSeqno).toBe(resume);
        const u = decode(unsubscribeFrame(ts, id));
        expect(u.message.case).toBe('unsubscribe');
        expect(u.message.case === 'unsubscribe' && u.message.value.shardId).toBe(id.toWellFormed());
      }),
    );
  });

  it('rounds a timestamp to whole nanoseconds and never overflows them', () => {
    const m = decode(pushFrame(1999.9999999, 's', 1n, new Uint8Array(), 0));
    expect(m.timestamp).toMatchObject({ secs: 1n, nanos: 999_999_999 });
    expect(m.message.case === 'pushDiff' && m.message.value.originTimestamp).toMatchObject({
      secs: 0n,
      nanos: 0,
    });
  });
});
