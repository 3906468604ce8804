import { isSeqno, MAX_SHARD_ID_BYTES_LIMIT } from '../protocol/index.js';
import { ConsensusError } from './errors.js';
import type { CallOptions, VersionedData } from './types.js';

/**
 * A key's size limit, in UTF-8 bytes: the largest shard id limit any layer may be configured
 * with (src/protocol). Real shard ids are 37 bytes.
 */
export const MAX_KEY_BYTES = MAX_SHARD_ID_BYTES_LIMIT;
/** A version's data size limit, in bytes. */
export const MAX_DATA_BYTES = 32 * 1024 * 1024;
/** The largest `scan` limit. */
export const MAX_SCAN_LIMIT = 100_000;
export const DEFAULT_LIST_PAGE_SIZE = 1000;
export const MAX_LIST_PAGE_SIZE = 10_000;

/**
 * Checks a key at the edge: a non-empty string of at most `MAX_KEY_BYTES` UTF-8 bytes, without
 * NUL (Postgres `text` cannot hold it) and without lone surrogates (they cannot round-trip).
 * Any other character, SQL or Lua syntax included, is stored verbatim.
 */
export function validateKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new ConsensusError('invalid_argument', 'key must be a non-empty string');
  }
  if (key.includes('\u0000')) {
    throw new ConsensusError('invalid_argument', 'key must not contain NUL characters');
  }
  if (!key.isWellFormed()) {
    throw new ConsensusError(
      'invalid_argument',
      'key must be well-formed UTF-16 (no lone surrogates)',
    );
  }
  // A UTF-16 code unit is at most 3 UTF-8 bytes: a short key needs no count (a hot path).
  const bytes = key.length * 3 <= MAX_KEY_BYTES ? 0 : Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_BYTES) {
    throw new ConsensusError(
      'invalid_argument',
      `key is ${bytes} bytes; the limit is ${MAX_KEY_BYTES}`,
    );
  }
  return key;
}

export function validateSeqno(seqno: unknown, what = 'seqno'): bigint {
  if (typeof seqno !== 'bigint') {
    throw new ConsensusError('invalid_argument', `${what} must be a bigint`);
  }
  if (!isSeqno(seqno)) {
    throw new ConsensusError('invalid_argument', `${what} ${seqno} is outside [0, 2^63-1]`);
  }
  return seqno;
}

export function validateData(data: unknown): Uint8Array {
  if (!(data instanceof Uint8Array)) {
    throw new ConsensusError('invalid_argument', 'data must be a Uint8Array');
  }
  if (data.byteLength > MAX_DATA_BYTES) {
    throw new ConsensusError(
      'invalid_argument',
      `data is ${data.byteLength} bytes; the limit is ${MAX_DATA_BYTES}`,
    );
  }
  return data;
}

/** Validates a compare-and-set's arguments; `next.seqno <= expected` is a caller error. */
export function validateCas(key: unknown, expected: unknown, next: unknown): void {
  validateKey(key);
  if (expected !== null) validateSeqno(expected, 'expected');
  if (typeof next !== 'object' || next === null) {
    throw new ConsensusError('invalid_argument', 'next must be { seqno, data }');
  }
  const { seqno, data } = next as VersionedData;
  validateSeqno(seqno, 'next.seqno');
  validateData(data);
  if (expected !== null && seqno <= (expected as bigint)) {
    throw new ConsensusError(
      'invalid_argument',
      `next.seqno ${seqno} must be greater than expected ${expected as bigint}`,
      { key: key as string },
    );
  }
}

export function validateLimit(limit: unknown): number {
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
    throw new ConsensusError('invalid_argument', 'limit must be an integer >= 1');
  }
  if (limit > MAX_SCAN_LIMIT) {
    throw new ConsensusError('invalid_argument', `limit ${limit} is above ${MAX_SCAN_LIMIT}`);
  }
  return limit;
}

export function validatePageSize(pageSize: unknown): number {
  if (pageSize === undefined) return DEFAULT_LIST_PAGE_SIZE;
  if (
    typeof pageSize !== 'number' ||
    !Number.isSafeInteger(pageSize) ||
    pageSize < 1 ||
    pageSize > MAX_LIST_PAGE_SIZE
  ) {
    throw new ConsensusError(
      'invalid_argument',
      `pageSize must be an integer in [1, ${MAX_LIST_PAGE_SIZE}]`,
    );
  }
  return pageSize;
}

/** Throws `aborted` if the signal has fired; called before a request is sent. */
export function throwIfAborted(options: CallOptions | undefined): void {
  const signal = options?.signal;
  if (signal?.aborted) {
    throw new ConsensusError('aborted', 'the call was aborted', { cause: signal.reason });
  }
}

/** Encodes a page token from an opaque cursor string (base64url, so it is URL-safe). */
export function encodePageToken(cursor: string): string {
  return Buffer.from(cursor, 'utf8').toString('base64url');
}

/** Decodes a page token made by `encodePageToken`; a malformed one is `invalid_argument`. */
export function decodePageToken(token: unknown): string | undefined {
  if (token === undefined) return undefined;
  if (typeof token !== 'string' || !/^[A-Za-z0-9_-]+$/.test(token)) {
    throw new ConsensusError('invalid_argument', 'pageToken is malformed');
  }
  return Buffer.from(token, 'base64url').toString('utf8');
}
