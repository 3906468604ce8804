/**
 * The seqno range, one for every layer: [0, 2^63-1]. Consensus stores seqnos in signed 64-bit
 * columns (Postgres `bigint`, SQLite `INTEGER`), so that is the range of every version that can
 * exist. The wire field is a protobuf `uint64`; the codec refuses a seqno above `MAX_SEQNO`
 * (`seqno_range`) as it would any other malformed message, so past the edge every seqno fits.
 */

/** The largest seqno: 2^63-1. */
export const MAX_SEQNO = (1n << 63n) - 1n;

/** True if `value` is a bigint seqno in [0, MAX_SEQNO]. */
export function isSeqno(value: unknown): value is bigint {
  return typeof value === 'bigint' && value >= 0n && value <= MAX_SEQNO;
}
