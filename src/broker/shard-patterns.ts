/**
 * The shard-id patterns of a scoped token (`--auth-tokens-file`, README "Operating: auth"): the
 * shards a token may publish to or subscribe to. NATS-like permissions, on shard ids rather than
 * dotted subjects (a shard id has no structure but its prefix: `s` + a UUID, or an operator's own
 * naming scheme such as `tenant-a/...`):
 *
 * - `s0a1b...` (no `*`): exactly that shard id;
 * - `tenant-a/*` (a trailing `*`): every shard id that starts with `tenant-a/` (the prefix may be
 *   empty: `*` alone is every shard);
 * - a `*` anywhere else is an error (so `a*b` never silently means "starts with a*b"), as is an
 *   empty pattern or a character outside the shard-id rule's printable ASCII (0x21–0x7E).
 *
 * A list allows a shard if any of its patterns matches; an empty list allows none. A list is
 * compiled once (per tokens-file reload) into a set of exact ids and a list of prefixes.
 */
import { MAX_SHARD_ID_BYTES_LIMIT } from '../protocol/index.js';
import { BrokerError } from './errors.js';

/** A pattern longer than this (the longest shard id any broker accepts, and a `*`) is refused. */
export const MAX_SHARD_PATTERN_CHARS = MAX_SHARD_ID_BYTES_LIMIT + 1;
/** A list of more patterns than this is refused. */
export const MAX_SHARD_PATTERNS = 10_000;

const PATTERN_CHARS = /^[\x21-\x7e]+$/;

/** A compiled list of shard-id patterns. */
export interface ShardPatterns {
  /** Whether `shardId` (already checked against the shard id rule) is allowed. */
  matches(shardId: string): boolean;
  /** The patterns as written, for logs and listings. */
  readonly source: readonly string[];
}

class CompiledPatterns implements ShardPatterns {
  constructor(
    readonly source: readonly string[],
    private readonly all: boolean,
    private readonly exact: ReadonlySet<string>,
    /** Sorted, none a prefix of another (the longer one is redundant). */
    private readonly prefixes: readonly string[],
  ) {}

  matches(shardId: string): boolean {
    if (this.all || this.exact.has(shardId)) return true;
    for (const p of this.prefixes) if (shardId.startsWith(p)) return true;
    return false;
  }
}

/**
 * Compiles `patterns` (untrusted: from a file); `field` names the list in errors, e.g.
 * `tokens[2].publish`. Throws a `BrokerError('invalid_argument')` naming the bad pattern.
 */
export function compileShardPatterns(patterns: unknown, field: string): ShardPatterns {
  if (!Array.isArray(patterns)) {
    throw new BrokerError('invalid_argument', `${field} must be an array of shard-id patterns`);
  }
  if (patterns.length > MAX_SHARD_PATTERNS) {
    throw new BrokerError(
      'invalid_argument',
      `${field} has more than ${MAX_SHARD_PATTERNS} patterns`,
    );
  }
  let all = false;
  const exact = new Set<string>();
  const prefixes: string[] = [];
  patterns.forEach((p: unknown, i) => {
    const at = `${field}[${i}]`;
    if (typeof p !== 'string' || p.length === 0) {
      throw new BrokerError('invalid_argument', `${at} must be a non-empty string`);
    }
    if (p.length > MAX_SHARD_PATTERN_CHARS) {
      throw new BrokerError(
        'invalid_argument',
        `${at} is longer than ${MAX_SHARD_PATTERN_CHARS} characters`,
      );
    }
    if (!PATTERN_CHARS.test(p)) {
      throw new BrokerError(
        'invalid_argument',
        `${at} ${JSON.stringify(p)} has a character outside printable ASCII without spaces (0x21-0x7E)`,
      );
    }
    const star = p.indexOf('*');
    if (star === -1) exact.add(p);
    else if (star !== p.length - 1) {
      throw new BrokerError(
        'invalid_argument',
        `${at} ${JSON.stringify(p)}: only a trailing * is a wildcard (an exact id, or a prefix followed by *)`,
      );
    } else if (star === 0) all = true;
    else prefixes.push(p.slice(0, -1));
  });
  prefixes.sort();
  const kept: string[] = [];
  for (const p of prefixes) {
    const last = kept[kept.length - 1];
    if (last === undefined || !p.startsWith(last)) kept.push(p);
  }
  return new CompiledPatterns(Object.freeze([...(patterns as string[])]), all, exact, kept);
}
