/**
 * `mz_proto.ProtoDuration` ({secs: uint64, nanos: uint32}) as a time since the Unix epoch, and
 * milliseconds (a double; sub-ms precision kept) on our side. Every timestamp on the wire
 * (`ProtoPubSubMessage.timestamp`, `ProtoPushDiff.origin_timestamp`) goes through these two.
 */

export interface DurationParts {
  secs: number;
  nanos: number;
}

/** Ms since the epoch to {secs, nanos}; negative or non-finite is taken as 0. */
export function durationFromMs(ms: number): DurationParts {
  const t = Number.isFinite(ms) && ms > 0 ? ms : 0;
  const secs = Math.floor(t / 1000);
  const nanos = Math.min(999_999_999, Math.max(0, Math.round((t - secs * 1000) * 1e6)));
  return { secs, nanos };
}

/** {secs, nanos} to ms since the epoch. */
export function msFromDuration(secs: number, nanos: number): number {
  return secs * 1000 + nanos / 1e6;
}
