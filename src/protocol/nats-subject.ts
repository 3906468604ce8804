/**
 * The NATS subject scheme shared by the NATS client transport and the broker bridge, so that
 * NATS-direct clients and bridged brokers on the same prefix see each other's diffs.
 *
 * One subject per shard: `<prefix>.<base64url(UTF-8 of the shard id), no padding>`. NATS subject
 * tokens cannot hold spaces, `.`, `*` or `>` (and should stay printable); base64url uses only
 * `A-Z a-z 0-9 - _`, so any shard id, whatever its characters, maps to exactly one valid token,
 * and the mapping is reversible. A real id (`s` + UUID, 37 bytes) becomes a 50-character token.
 * Subjects are case-sensitive in NATS, as base64url needs.
 *
 * Every message is one `ProtoPubSubMessage` (the gRPC wire bytes, without the gRPC frame
 * prefix): `timestamp` = the sender's clock, `push_diff` = shard id, seqno, diff and the
 * origin commit timestamp. The header `Persist-Pubsub-Origin` names the publishing client or
 * broker, so a receiver can drop its own messages even without `noEcho`.
 */

/** The default subject prefix. @default 'persist-pubsub.v1.shard' */
export const DEFAULT_SUBJECT_PREFIX = 'persist-pubsub.v1.shard';
/** NATS header naming the publisher (a client's or broker's random id). */
export const ORIGIN_HEADER = 'Persist-Pubsub-Origin';

const TOKEN = /^[^\s.*>]+$/;

export type SubjectPrefixResult = { ok: true; prefix: string } | { ok: false; detail: string };

/**
 * Parses a subject prefix: a literal NATS subject (dot-separated tokens of printable ASCII
 * without spaces, `*` or `>`). Never throws; the caller names its own field in its error.
 */
export function parseSubjectPrefix(prefix: unknown): SubjectPrefixResult {
  if (typeof prefix !== 'string' || prefix.length === 0) {
    return { ok: false, detail: 'must be a non-empty NATS subject' };
  }
  for (const token of prefix.split('.')) {
    if (!TOKEN.test(token) || /[^\x21-\x7e]/.test(token)) {
      return {
        ok: false,
        detail: `must be dot-separated tokens of printable ASCII without spaces, '*' or '>', got ${JSON.stringify(prefix)}`,
      };
    }
  }
  return { ok: true, prefix };
}

/** The subject of one shard. */
export function shardSubject(prefix: string, shardId: string): string {
  return `${prefix}.${Buffer.from(shardId, 'utf8').toString('base64url')}`;
}

/** The shard id of a subject under `prefix`, or undefined if it is not one of ours. */
export function shardIdOfSubject(prefix: string, subject: string): string | undefined {
  if (!subject.startsWith(`${prefix}.`)) return undefined;
  const token = subject.slice(prefix.length + 1);
  if (token.length === 0 || !/^[A-Za-z0-9_-]+$/.test(token)) return undefined;
  const id = Buffer.from(token, 'base64url').toString('utf8');
  // Only a canonical encoding maps back (no trailing bits, valid UTF-8).
  return shardSubject(prefix, id) === subject ? id : undefined;
}
