/**
 * Shard id and caller id checks at the edge. A shard id is accepted if it is 1 to
 * `maxShardIdBytes` bytes of printable ASCII without spaces (0x21-0x7E): real ids look like
 * `s` + a UUID; anything else (control bytes, spaces, invalid or non-ASCII UTF-8) is refused
 * with INVALID_ARGUMENT rather than crashing, where the reference panics.
 */
export type ShardIdCheck =
  | { ok: true; shardId: string }
  | { ok: false; reason: 'shard_id_length' | 'shard_id_charset'; detail: string };

export function checkShardIdBytes(bytes: Uint8Array, maxShardIdBytes: number): ShardIdCheck {
  const len = bytes.length;
  if (len === 0) return { ok: false, reason: 'shard_id_length', detail: 'shard id is empty' };
  if (len > maxShardIdBytes) {
    return {
      ok: false,
      reason: 'shard_id_length',
      detail: `shard id is ${len} bytes, more than the limit of ${maxShardIdBytes}`,
    };
  }
  for (let i = 0; i < len; i++) {
    const b = bytes[i]!;
    if (b < 0x21 || b > 0x7e) {
      return {
        ok: false,
        reason: 'shard_id_charset',
        detail: `shard id byte ${i} is 0x${b.toString(16).padStart(2, '0')}: only printable ASCII without spaces is allowed`,
      };
    }
  }
  // Printable ASCII: latin1 decoding is exact and the fastest.
  const s = Buffer.from(bytes.buffer, bytes.byteOffset, len).toString('latin1');
  return { ok: true, shardId: s };
}

/** The same check for a shard id given as a string (same-process connections). */
export function checkShardIdString(shardId: string, maxShardIdBytes: number): ShardIdCheck {
  if (typeof shardId !== 'string') {
    return { ok: false, reason: 'shard_id_charset', detail: 'shard id must be a string' };
  }
  return checkShardIdBytes(Buffer.from(shardId, 'utf8'), maxShardIdBytes);
}

/** Longest caller id kept; longer ones are cut. */
export const MAX_CALLER_ID_CHARS = 128;

/**
 * Sanitises the `persist-pubsub-caller-id` header for logs and metric labels: keeps
 * `[A-Za-z0-9._:@/-]`, replaces anything else with `_`, cuts at 128 characters; empty or
 * absent → `unknown` (the reference's default).
 */
export function sanitizeCallerId(value: unknown): string {
  const raw = Array.isArray(value) ? value[0] : value;
  if (typeof raw !== 'string' || raw.length === 0) return 'unknown';
  const cut = raw.slice(0, MAX_CALLER_ID_CHARS).replace(/[^A-Za-z0-9._:@/-]/g, '_');
  return cut.length === 0 ? 'unknown' : cut;
}
