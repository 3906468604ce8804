import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ProtoGapReason,
  type ProtoPubSubMessage,
  ProtoPubSubMessageSchema,
  ProtoPushDiffSchema,
  ProtoRefusalReason,
  ProtoRefusedCall,
} from '../gen/mz_persist_client/internal/service/pubsub_pb.js';
import { ProtoDurationSchema } from '../gen/mz_proto/proto_pb.js';
import {
  type DecodeResult,
  decodeMessage,
  encodeForward,
  encodeGap,
  encodePush,
  encodePushDiff,
  encodeRefusal,
  encodeSubscribe,
  encodeUnsubscribe,
  forwardLength,
  type GapReason,
  type RefusalReason,
  type RefusedCall,
  writeForward,
} from './codec.js';
import { durationFromMs } from './duration.js';
import { GRPC_FRAME_HEADER_BYTES } from './grpc.js';
import { MAX_SEQNO } from './seqno.js';

const toBytes = (s: string) => Buffer.from(s, 'utf8');
const seqnoArb = fc.bigInt({ min: 0n, max: MAX_SEQNO });
const idArb = fc.oneof(
  fc.constant('s00000000-0000-0000-0000-000000000000'),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
);
const durationArb = fc.record({
  secs: fc.bigInt({ min: 0n, max: 2n ** 40n }),
  nanos: fc.integer({ min: 0, max: 999_999_999 }),
});
const gapReasons: [GapReason, ProtoGapReason][] = [
  ['unknown', ProtoGapReason.UNSPECIFIED],
  ['slow_consumer', ProtoGapReason.SLOW_CONSUMER],
  ['resume_unavailable', ProtoGapReason.RESUME_UNAVAILABLE],
  ['not_forwarding', ProtoGapReason.NOT_FORWARDING],
];
const refusalReasons: [RefusalReason, ProtoRefusalReason][] = [
  ['unknown', ProtoRefusalReason.UNSPECIFIED],
  ['invalid_shard_id', ProtoRefusalReason.INVALID_SHARD_ID],
  ['subscription_limit', ProtoRefusalReason.SUBSCRIPTION_LIMIT],
  ['permission_denied', ProtoRefusalReason.PERMISSION_DENIED],
];
const refusedCalls: [RefusedCall, ProtoRefusedCall][] = [
  ['unknown', ProtoRefusedCall.UNSPECIFIED],
  ['subscribe', ProtoRefusedCall.SUBSCRIBE],
  ['push', ProtoRefusedCall.PUSH],
];

/** Any `ProtoPubSubMessage` our codec models, built with the generated schema. */
const generatedArb: fc.Arbitrary<ProtoPubSubMessage> = fc
  .tuple(
    fc.option(durationArb, { nil: undefined }),
    fc.oneof(
      fc.record({
        case: fc.constant('pushDiff' as const),
        value: fc.record({
          shardId: idArb,
          seqno: seqnoArb,
          diff: fc.uint8Array({ maxLength: 300 }),
          originTimestamp: fc.option(durationArb, { nil: undefined }),
        }),
      }),
      fc.record({
        case: fc.constant('subscribe' as const),
        value: fc.record({
          shardId: idArb,
          resumeAfterSeqno: fc.option(seqnoArb, { nil: undefined }),
        }),
      }),
      fc.record({
        case: fc.constant('unsubscribe' as const),
        value: fc.record({ shardId: idArb }),
      }),
      fc.record({
        case: fc.constant('gap' as const),
        value: fc.record({
          shardId: idArb,
          reason: fc.constantFrom(...gapReasons.map(([, p]) => p)),
          fromSeqno: seqnoArb,
          dropped: fc.bigInt({ min: 0n, max: 2n ** 50n }),
        }),
      }),
      fc.record({
        case: fc.constant('refused' as const),
        value: fc.record({
          shardId: idArb,
          reason: fc.constantFrom(...refusalReasons.map(([, p]) => p)),
          detail: fc.string({ unit: 'grapheme', maxLength: 60 }),
          call: fc.constantFrom(...refusedCalls.map(([, p]) => p)),
        }),
      }),
      fc.constant({ case: undefined, value: undefined }),
    ),
  )
  .map(([timestamp, message]) =>
    // biome-ignore lint/suspicious/noExplicitAny: the generated oneof's init type
    create(ProtoPubSubMessageSchema, { timestamp, message: message as any }),
  );

const msOf = (d: { secs: bigint; nanos: number } | undefined) =>
  d === undefined ? undefined : Number(d.secs) * 1000 + d.nanos / 1e6;
const latin1Bytes = (s: string) => Buffer.from(s, 'latin1');

/** Checks that our decode of `bytes` says what the generated message `m` says. */
function expectSame(r: DecodeResult, m: ProtoPubSubMessage): void {
  if (r.kind === 'error') throw new Error(`${r.code}: ${r.detail}`);
  expect(r.timestampMs).toBe(msOf(m.timestamp));
  const c = m.message;
  if (c.case === undefined) {
    expect(r.kind).toBe('empty');
    return;
  }
  if (r.kind === 'empty') throw new Error('decoded as empty');
  expect(latin1Bytes(r.shardId).equals(toBytes(c.value.shardId))).toBe(true);
  switch (c.case) {
    case 'pushDiff': {
      if (r.kind !== 'push') throw new Error(r.kind);
      expect(r.seqno).toBe(c.value.seqno);
      expect(Buffer.from(r.diff).equals(Buffer.from(c.value.diff))).toBe(true);
      expect(r.originTimestampMs).toBe(msOf(c.value.originTimestamp));
      expect(
        Buffer.from(r.pushDiff).equals(Buffer.from(toBinary(ProtoPushDiffSchema, c.value))),
      ).toBe(true);
      return;
    }
    case 'subscribe':
      if (r.kind !== 'subscribe') throw new Error(r.kind);
      expect(r.resumeAfterSeqno).toBe(c.value.resumeAfterSeqno);
      return;
    case 'unsubscribe':
      expect(r.kind).toBe('unsubscribe');
      return;
    case 'gap':
      if (r.kind !== 'gap') throw new Error(r.kind);
      expect(r.reason).toBe(gapReasons.find(([, p]) => p === c.value.reason)![0]);
      expect(r.fromSeqno).toBe(c.value.fromSeqno);
      expect(r.dropped).toBe(Number(c.value.dropped));
      return;
    case 'refused':
      if (r.kind !== 'refused') throw new Error(r.kind);
      expect(r.reason).toBe(refusalReasons.find(([, p]) => p === c.value.reason)![0]);
      expect(r.detail).toBe(c.value.detail);
      expect(r.call).toBe(refusedCalls.find(([, p]) => p === c.value.call)![0]);
      return;
  }
}

/** Encodes a generated message with our encoders (timestamps given in ms). */
function encodeOurs(m: ProtoPubSubMessage, framed: boolean): Buffer | undefined {
  const ts = msOf(m.timestamp);
  const c = m.message;
  switch (c.case) {
    case 'pushDiff':
      return encodePush(
        c.value.shardId,
        c.value.seqno,
        c.value.diff,
        msOf(c.value.originTimestamp),
        ts,
        framed,
      );
    case 'subscribe':
      return encodeSubscribe(c.value.shardId, c.value.resumeAfterSeqno, ts, framed);
    case 'unsubscribe':
      return encodeUnsubscribe(c.value.shardId, ts, framed);
    case 'gap':
      return encodeGap(
        c.value.shardId,
        gapReasons.find(([, p]) => p === c.value.reason)![0],
        c.value.fromSeqno,
        Number(c.value.dropped),
        ts,
        framed,
      );
    case 'refused':
      return encodeRefusal(
        c.value.shardId,
        refusalReasons.find(([, p]) => p === c.value.reason)![0],
        c.value.detail,
        ts,
        framed,
        refusedCalls.find(([, p]) => p === c.value.call)![0],
      );
    default:
      return undefined;
  }
}

/** Our encoders take ms: the generated message with each duration rounded through ms. */
function throughMs(m: ProtoPubSubMessage): ProtoPubSubMessage {
  const round = (d: { secs: bigint; nanos: number } | undefined) => {
    if (d === undefined) return undefined;
    const p = durationFromMs(msOf(d)!);
    return create(ProtoDurationSchema, { secs: BigInt(p.secs), nanos: p.nanos });
  };
  const copy = create(ProtoPubSubMessageSchema, m);
  copy.timestamp = round(m.timestamp);
  if (copy.message.case === 'pushDiff') {
    copy.message.value.originTimestamp = round(copy.message.value.originTimestamp);
  }
  return copy;
}

/** Unknown fields: a field number our schema does not use, any wire type, a valid value. */
const unknownFieldArb = fc.oneof(
  fc.record({ field: fc.integer({ min: 7, max: 5000 }), wt: fc.constant(0), v: fc.nat() }),
  fc.record({
    field: fc.integer({ min: 7, max: 5000 }),
    wt: fc.constant(2),
    v: fc.uint8Array({ maxLength: 20 }),
  }),
  fc.record({ field: fc.integer({ min: 7, max: 5000 }), wt: fc.constantFrom(1, 5), v: fc.nat() }),
);

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

type UnknownField = { field: number; wt: number; v: number | Uint8Array };

function unknownBytes(f: UnknownField): number[] {
  const tag = varint(f.field * 8 + f.wt);
  if (f.wt === 0) return [...tag, ...varint(f.v as number)];
  if (f.wt === 1) return [...tag, 1, 2, 3, 4, 5, 6, 7, 8];
  if (f.wt === 5) return [...tag, 1, 2, 3, 4];
  const v = f.v as Uint8Array;
  return [...tag, ...varint(v.length), ...v];
}

describe('decodeMessage', () => {
  it('property: decodes what the generated encoder writes, every variant', () => {
    fc.assert(
      fc.property(generatedArb, (m) => {
        expectSame(decodeMessage(toBinary(ProtoPubSubMessageSchema, m)), m);
      }),
      { numRuns: 2000 },
    );
  });

  it('property: skips unknown fields of any wire type, before, between and after', () => {
    fc.assert(
      fc.property(
        generatedArb,
        fc.array(unknownFieldArb, { maxLength: 3 }),
        fc.array(unknownFieldArb, { maxLength: 3 }),
        (m, before, after) => {
          const known = toBinary(ProtoPubSubMessageSchema, m);
          const bytes = Uint8Array.from([
            ...before.flatMap(unknownBytes),
            ...known,
            ...after.flatMap(unknownBytes),
          ]);
          expectSame(decodeMessage(bytes), m);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('skips unknown fields inside a push_diff too (a newer peer’s extension)', () => {
    const pd = encodePushDiff('s1', 7n, Uint8Array.of(1, 2), undefined);
    const extended = Buffer.concat([pd, Uint8Array.of(0x2a, 0x02, 0x08, 0x01, 0x30, 0x05)]);
    const bytes = encodeForward(extended, 10, false);
    const r = decodeMessage(bytes);
    if (r.kind !== 'push') throw new Error(r.kind);
    expect([r.shardId, r.seqno, [...r.diff]]).toEqual(['s1', 7n, [1, 2]]);
    // Forwarded verbatim, extension included.
    expect(Buffer.from(r.pushDiff).equals(extended)).toBe(true);
  });

  it('decodes a message in place, bytes [start, end) of a larger buffer, as its own view', () => {
    const msg = encodePush('s1', 7n, Uint8Array.of(1, 2), 5, 10, false);
    const around = Buffer.concat([Buffer.from([0x0a, 0xff]), msg, Buffer.from([0xff, 0x07])]);
    const r = decodeMessage(around, 2, 2 + msg.length);
    const own = decodeMessage(msg);
    if (r.kind !== 'push' || own.kind !== 'push') throw new Error(r.kind);
    expect([r.shardId, r.seqno, [...r.diff], r.originTimestampMs, r.timestampMs]).toEqual([
      own.shardId,
      own.seqno,
      [...own.diff],
      own.originTimestampMs,
      own.timestampMs,
    ]);
    expect(Buffer.from(r.pushDiff).equals(Buffer.from(own.pushDiff))).toBe(true);
    expect(r.pushDiff.buffer).toBe(around.buffer);
    // The bytes around it are not read: the whole buffer is no message.
    expect(decodeMessage(around).kind).toBe('error');
  });

  it('shard id cache: ids that share their hashed tail, and a reused input buffer, decode right', () => {
    const tail = '-0000-0000-0000-000000000001';
    const ids = ['a', 'b', 'c'].map((p) => `${p}${tail}`);
    for (let round = 0; round < 3; round++) {
      for (const id of ids) {
        expect(decodeMessage(encodeUnsubscribe(id, undefined, false))).toMatchObject({
          shardId: id,
        });
      }
    }
    // The cache keeps a copy: overwriting the decoded bytes in place changes the next result.
    const bytes = encodeUnsubscribe(ids[0]!, undefined, false);
    expect(decodeMessage(bytes)).toMatchObject({ shardId: ids[0] });
    bytes[4] = 0x7a; // the id's first character
    expect(decodeMessage(bytes)).toMatchObject({ shardId: `z${tail}` });
  });

  it("a push's shardIdValid: the rule's verdict, from the id cache after the first decode", () => {
    const valid = (id: string) => {
      const r = decodeMessage(encodePush(id, 1n, Uint8Array.of(1), undefined, undefined, false));
      if (r.kind !== 'push') throw new Error(r.kind);
      expect(r.shardId).toBe(Buffer.from(id, 'utf8').toString('latin1'));
      return r.shardIdValid;
    };
    const good = 's0e2c4f06-3d4b-4a1e-9f3c-2b7d8e9a1c55';
    // The first decode checks the rule; the second answers from the cache.
    expect([valid(good), valid(good)]).toEqual([true, true]);
    for (const bad of ['s with spaces', 'sé-non-ascii', 's\u007f-del']) {
      expect([valid(bad), valid(bad)]).toEqual([false, false]);
    }
    // Longer than the cache holds: not known (the caller checks it), however valid.
    expect(valid(`s${'x'.repeat(100)}`)).toBe(false);
  });

  it('refuses a seqno above 2^63-1 (push, resume, gap) with seqno_range', () => {
    const big = MAX_SEQNO + 1n;
    const cases: ProtoPubSubMessage['message'][] = [
      { case: 'pushDiff', value: create(ProtoPushDiffSchema, { shardId: 's', seqno: big }) },
      // biome-ignore lint/suspicious/noExplicitAny: init types
      { case: 'subscribe', value: { shardId: 's', resumeAfterSeqno: 2n ** 64n - 1n } as any },
      // biome-ignore lint/suspicious/noExplicitAny: init types
      { case: 'gap', value: { shardId: 's', fromSeqno: big } as any },
    ];
    for (const message of cases) {
      const bytes = toBinary(
        ProtoPubSubMessageSchema,
        create(ProtoPubSubMessageSchema, { message }),
      );
      expect(decodeMessage(bytes)).toMatchObject({ kind: 'error', code: 'seqno_range' });
    }
    const max = toBinary(
      ProtoPubSubMessageSchema,
      create(ProtoPubSubMessageSchema, {
        message: { case: 'pushDiff', value: { shardId: 's', seqno: MAX_SEQNO } },
      }),
    );
    expect(decodeMessage(max)).toMatchObject({ kind: 'push', seqno: MAX_SEQNO });
  });

  it('refuses truncations, bad wire types and bad varints with a stable code', () => {
    const good = encodePush('sx', 300n, toBytes('d'), 5, undefined, false);
    for (let n = 1; n < good.length; n++) {
      expect(decodeMessage(good.subarray(0, n)).kind).toBe('error');
    }
    const err = (...b: number[]) => decodeMessage(Uint8Array.from(b));
    expect(err(0x10, 0x01)).toMatchObject({ kind: 'error', code: 'bad_wire_type' });
    expect(err(0x0b)).toMatchObject({ kind: 'error', code: 'bad_wire_type' });
    expect(err(0x00)).toMatchObject({ kind: 'error', code: 'bad_field' });
    expect(err(0x12, 0xff, 0xff, 0xff, 0xff, 0x7f)).toMatchObject({
      kind: 'error',
      code: 'length_overflow',
    });
    expect(err(0x12, 0x05, 0x0a)).toMatchObject({ kind: 'error', code: 'truncated' });
    expect(err(0x08, ...new Array(11).fill(0x80))).toMatchObject({ code: 'bad_varint' });
    expect(err(0x08, 0x80, 0x80)).toMatchObject({ kind: 'error', code: 'truncated' });
    // push_diff.shard_id as a varint.
    expect(err(0x12, 0x02, 0x08, 0x01)).toMatchObject({ code: 'bad_wire_type' });
    expect(decodeMessage(new Uint8Array(0))).toEqual({ kind: 'empty', timestampMs: undefined });
  });

  it('fuzz: random and mutated bytes never throw, and an error never leaks into the next decode', () => {
    const valid = encodePush('s1', 9n, toBytes('abc'), 1, 2, false);
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        (bytes, edits) => {
          const r = decodeMessage(bytes);
          expect(typeof r.kind).toBe('string');
          const m = Buffer.from(valid);
          for (const [i, v] of edits) m[i % m.length] = v;
          decodeMessage(m);
          expect(decodeMessage(valid)).toMatchObject({ kind: 'push', seqno: 9n });
        },
      ),
      { numRuns: 5000 },
    );
  });
});

describe('encoders', () => {
  it('property: byte-for-byte what the generated encoder writes, and decoded back by it', () => {
    fc.assert(
      fc.property(generatedArb, fc.boolean(), (generated, framed) => {
        const m = throughMs(generated);
        const ours = encodeOurs(m, framed);
        if (ours === undefined) return;
        const body = framed ? ours.subarray(GRPC_FRAME_HEADER_BYTES) : ours;
        if (framed) {
          expect(ours[0]).toBe(0);
          expect(ours.readUInt32BE(1)).toBe(body.length);
        }
        expect(Buffer.from(body).equals(Buffer.from(toBinary(ProtoPubSubMessageSchema, m)))).toBe(
          true,
        );
        expectSame(decodeMessage(body), fromBinary(ProtoPubSubMessageSchema, body));
      }),
      { numRuns: 2000 },
    );
  });

  it('property: a forward (encodeForward, or writeForward into a larger buffer) is byte-for-byte the generated encoding', () => {
    fc.assert(
      fc.property(generatedArb, fc.boolean(), fc.nat(64), (generated, framed, offset) => {
        const m = throughMs(generated);
        if (m.message.case !== 'pushDiff') return;
        const pd = toBinary(ProtoPushDiffSchema, m.message.value);
        const ts = msOf(m.timestamp);
        const expected = Buffer.from(toBinary(ProtoPubSubMessageSchema, m));
        const own = encodeForward(pd, ts, framed);
        const body = framed ? own.subarray(GRPC_FRAME_HEADER_BYTES) : own;
        expect(body.equals(expected)).toBe(true);
        if (framed) expect(own.readUInt32BE(1)).toBe(expected.length);
        // Another timestamp in between: the cached timestamp bytes follow the argument.
        encodeForward(pd, (ts ?? 0) + 1, framed);
        const n = forwardLength(pd.length, ts, framed);
        expect(n).toBe(own.length);
        const out = Buffer.alloc(offset + n + 8, 0xee);
        expect(writeForward(out, offset, pd, ts, framed)).toBe(offset + n);
        expect(out.subarray(offset, offset + n).equals(own)).toBe(true);
        expect(out.subarray(0, offset).every((b) => b === 0xee)).toBe(true);
        expect(out.subarray(offset + n).every((b) => b === 0xee)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('encodeForward: the broker timestamp + the raw push_diff, verbatim', () => {
    const pd = encodePushDiff('s9', 12n, toBytes('xyz'), 3004.5);
    const frame = encodeForward(pd, 1_700_000_000_250.5, true);
    const m = fromBinary(ProtoPubSubMessageSchema, frame.subarray(GRPC_FRAME_HEADER_BYTES));
    expect(m.timestamp).toMatchObject({ secs: 1_700_000_000n, nanos: 250_500_000 });
    if (m.message.case !== 'pushDiff') throw new Error('not a push');
    expect(m.message.value).toMatchObject({ shardId: 's9', seqno: 12n });
    expect(m.message.value.originTimestamp).toMatchObject({ secs: 3n, nanos: 4_500_000 });
  });

  it('writes a negative or non-finite time as 0 (an empty timestamp)', () => {
    for (const t of [-5, Number.NaN, Number.POSITIVE_INFINITY]) {
      const m = fromBinary(ProtoPubSubMessageSchema, encodeUnsubscribe('s', t, false));
      expect(m.timestamp).toMatchObject({ secs: 0n, nanos: 0 });
    }
  });
});
