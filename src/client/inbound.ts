/**
 * Inbound messages of the wire transports (gRPC to the broker, NATS): one decode with the
 * protocol codec at the edge, into the transport-neutral `InboundMessage`. Never throws: a
 * malformed message, or a diff or notice whose shard id breaks the shard id rule (no
 * subscription of ours can have it), is `unknown` (counted by the caller).
 */
import { decodeMessage, parseShardId } from '../protocol/index.js';
import type { InboundMessage } from './transport.js';

export function decodeInbound(bytes: Uint8Array): InboundMessage {
  const m = decodeMessage(bytes);
  switch (m.kind) {
    case 'push':
      if (!m.shardIdValid && !parseShardId(m.shardId).ok) break;
      return {
        kind: 'diff',
        shardId: m.shardId,
        seqno: m.seqno,
        diff: m.diff,
        originTimestampMs: m.originTimestampMs,
        brokerTimestampMs: m.timestampMs,
        bytes: bytes.byteLength,
      };
    case 'gap':
      if (!parseShardId(m.shardId).ok) break;
      return {
        kind: 'gap',
        shardId: m.shardId,
        reason: m.reason,
        fromSeqno: m.fromSeqno === 0n ? undefined : m.fromSeqno,
        bytes: bytes.byteLength,
      };
    case 'refused':
      // Not checked against the rule: a refused id may be one only the broker refuses.
      return {
        kind: 'refused',
        shardId: m.shardId,
        reason: m.reason,
        detail: m.detail,
        call: m.call,
        bytes: bytes.byteLength,
      };
  }
  return { kind: 'unknown', bytes: bytes.byteLength };
}
