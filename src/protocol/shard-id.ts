/**
 * The shard id: one rule, parsed once at every edge (the user's `openShard`, the broker's wire,
 * the same-process connection, a NATS subject).
 *
 * Rule: 1 to `maxBytes` bytes of printable ASCII without spaces (0x21-0x7E). Real ids are `s` +
 * a UUID (37 bytes); Materialize's `ShardId` parses only that form, so any id a reference client
 * sends fits. The rule keeps ids safe as metric labels, log fields, map keys, NATS subject tokens
 * (after base64url) and Postgres/SQLite/Redis keys, and makes the byte length the string length.
 *
 * The limit is configurable in one place per process: `DEFAULT_MAX_SHARD_ID_BYTES` everywhere,
 * the broker's `--max-shard-id-bytes` (`limits.maxShardIdBytes`) for what it accepts, never more
 * than `MAX_SHARD_ID_BYTES_LIMIT` (what every Consensus backend stores as a key).
 */

declare const shardIdBrand: unique symbol;

/** A shard id that passed `parseShardId`. A plain `string` at runtime. */
export type ShardId = string & { readonly [shardIdBrand]: true };

/** The shard id limit every layer uses unless configured otherwise, in bytes. @default 256 */
export const DEFAULT_MAX_SHARD_ID_BYTES = 256;
/** The largest shard id limit any layer may be configured with, in bytes (Consensus keys). */
export const MAX_SHARD_ID_BYTES_LIMIT = 512;

/** Why a shard id was refused. Stable codes, used as metric labels. */
export type ShardIdErrorReason = 'shard_id_length' | 'shard_id_charset';

export type ShardIdResult =
  | { ok: true; shardId: ShardId }
  | { ok: false; reason: ShardIdErrorReason; detail: string };

/**
 * A refused shard id, thrown where the user passes one (`openShard`). `code` is stable;
 * `reason` says which part of the rule failed.
 */
export class ShardIdError extends Error {
  override readonly name = 'ShardIdError';
  readonly code = 'invalid_shard_id';
  constructor(
    readonly reason: ShardIdErrorReason,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Ids whose characters passed, so that the ids a process sees over and over (every message
 * names one) are checked by one hash lookup instead of a walk. Bounded: cleared when full.
 */
const charsetChecked = new Set<string>();
const CHARSET_CHECKED_MAX = 4096;

function describe(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
}

/**
 * Parses a shard id. Never throws. A wire id is the field's bytes decoded as latin1 (one
 * character per byte, see `codec.ts`), so for both a user's string and a wire id the length
 * checked is the byte length of every id the rule accepts.
 */
export function parseShardId(
  value: unknown,
  maxBytes: number = DEFAULT_MAX_SHARD_ID_BYTES,
): ShardIdResult {
  if (typeof value !== 'string') {
    return { ok: false, reason: 'shard_id_charset', detail: 'shard id must be a string' };
  }
  const len = value.length;
  if (len === 0) return { ok: false, reason: 'shard_id_length', detail: 'shard id is empty' };
  if (len > maxBytes) {
    return {
      ok: false,
      reason: 'shard_id_length',
      detail: `shard id ${describe(value)} is ${len} characters, more than the limit of ${maxBytes} bytes`,
    };
  }
  if (!charsetChecked.has(value)) {
    for (let i = 0; i < len; i++) {
      const c = value.charCodeAt(i);
      if (c < 0x21 || c > 0x7e) {
        return {
          ok: false,
          reason: 'shard_id_charset',
          detail: `shard id ${describe(value)} has character ${i} U+${c.toString(16).padStart(4, '0')}: only printable ASCII without spaces (0x21-0x7E) is allowed`,
        };
      }
    }
    if (charsetChecked.size >= CHARSET_CHECKED_MAX) charsetChecked.clear();
    charsetChecked.add(value);
  }
  return { ok: true, shardId: value as ShardId };
}

/** `parseShardId` for an edge that throws: returns the id or throws `ShardIdError`. */
export function toShardId(value: unknown, maxBytes: number = DEFAULT_MAX_SHARD_ID_BYTES): ShardId {
  const r = parseShardId(value, maxBytes);
  if (!r.ok) throw new ShardIdError(r.reason, r.detail);
  return r.shardId;
}
