/**
 * Scoped bearer tokens (issue 16 part 3; README "Operating: auth"): each token has a name, the
 * caller id of its streams in metrics, logs and listings (it overrides the
 * `persist-pubsub-caller-id` header, which an authenticated caller could set to anything), and
 * two lists of shard-id patterns (`shard-patterns.ts`): the shards it may publish (push) to and
 * the shards it may subscribe to. Compiled once per load or reload into a `TokenTable`.
 *
 * ## Constant time
 * A presented token is never compared with a stored one byte by byte, nor used as a map key:
 * the table is keyed by HMAC-SHA256 of each token under a key drawn at random for that table,
 * and a lookup computes the presented token's HMAC and looks that up. The lookup's timing
 * depends only on the HMAC, which a client cannot compute (it does not know the key), so it
 * learns nothing from it about the stored tokens — not even about their hashes, as it could
 * with a map keyed by a plain SHA-256 (whose bucket and string-compare timing the client could
 * relate to hashes it computes itself). The cost is one HMAC per call admission (~2 µs), never
 * per message. A token's identity across reloads (a revoked token's streams are closed) is its
 * SHA-256, compared between our own tables only.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { sanitizeCallerId } from '../protocol/index.js';
import { BrokerError } from './errors.js';
import { compileShardPatterns, type ShardPatterns } from './shard-patterns.js';

/** A table of more tokens than this is refused. */
export const MAX_TOKENS = 10_000;

/** One token of `BrokerOptions.tokens` (and of the CLI's `--auth-tokens-file`). */
export interface TokenGrant {
  /**
   * The caller id of this token's streams (metrics, logs, listings): 1 to 128 characters of
   * `[A-Za-z0-9._:@/-]`. Several tokens may share a name (a rotation: old and new both valid).
   */
  name: string;
  /** The bearer token: visible ASCII without spaces (it travels in a header); unique. */
  token: string;
  /** Shard-id patterns this token may push to. @default [] (none) */
  publish?: readonly string[] | undefined;
  /** Shard-id patterns this token may subscribe to. @default [] (none) */
  subscribe?: readonly string[] | undefined;
}

/** What a token may do; shared by every stream that presented it. */
export interface TokenScope {
  readonly name: string;
  readonly publish: ShardPatterns;
  readonly subscribe: ShardPatterns;
}

export interface TokenTable {
  readonly size: number;
  /** The scope of a presented token, or undefined (see "Constant time"). */
  lookup(token: string): TokenScope | undefined;
  /** The scope, in this table, of the token that had `scope` in another table (a reload). */
  successor(scope: TokenScope): TokenScope | undefined;
}

const KEYS = new Set(['name', 'token', 'publish', 'subscribe']);
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

class Scope implements TokenScope {
  constructor(
    readonly name: string,
    readonly publish: ShardPatterns,
    readonly subscribe: ShardPatterns,
    /** SHA-256 of the token (base64): its identity across tables. */
    readonly digest: string,
  ) {}
}

function bad(message: string): never {
  throw new BrokerError('invalid_argument', message);
}

/**
 * Validates and compiles a list of grants (untrusted: from a file). Throws a
 * `BrokerError('invalid_argument')` naming the entry and field, e.g. `tokens[3].publish[0]`;
 * a message never contains a token.
 */
export function compileTokenGrants(grants: unknown, field = 'tokens'): TokenTable {
  if (!Array.isArray(grants))
    bad(`${field} must be an array of { name, token, publish, subscribe }`);
  if (grants.length > MAX_TOKENS) bad(`${field} has more than ${MAX_TOKENS} tokens`);
  const key = randomBytes(32);
  const mac = (token: string) => createHmac('sha256', key).update(token).digest('base64');
  const byMac = new Map<string, Scope>();
  const byDigest = new Map<string, Scope>();
  const nameOf = new Map<string, string>();
  grants.forEach((g: unknown, i) => {
    const at = `${field}[${i}]`;
    if (typeof g !== 'object' || g === null || Array.isArray(g)) bad(`${at} must be an object`);
    for (const k of Object.keys(g)) {
      if (!KEYS.has(k))
        bad(`${at} has an unknown field ${JSON.stringify(k)}; known: ${[...KEYS].join(', ')}`);
    }
    const { name, token, publish, subscribe } = g as Record<string, unknown>;
    if (typeof name !== 'string' || name.length === 0 || sanitizeCallerId(name) !== name) {
      bad(`${at}.name must be 1 to 128 characters of [A-Za-z0-9._:@/-]`);
    }
    if (typeof token !== 'string' || !TOKEN_CHARS.test(token)) {
      bad(`${at}.token (of ${name}) must be a non-empty string of visible ASCII without spaces`);
    }
    const digest = createHash('sha256').update(token).digest('base64');
    const twin = nameOf.get(digest);
    if (twin !== undefined) bad(`${at}.token (of ${name}) is also the token of ${twin}`);
    nameOf.set(digest, `${at} (${name})`);
    const scope = new Scope(
      name,
      compileShardPatterns(publish ?? [], `${at}.publish`),
      compileShardPatterns(subscribe ?? [], `${at}.subscribe`),
      digest,
    );
    byMac.set(mac(token), scope);
    byDigest.set(digest, scope);
  });
  return {
    size: byMac.size,
    lookup: (token) => byMac.get(mac(token)),
    successor: (scope) => (scope instanceof Scope ? byDigest.get(scope.digest) : undefined),
  };
}
