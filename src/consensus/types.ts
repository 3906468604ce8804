import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

/**
 * The Consensus store: a compare-and-set log of versions per key (a persist shard). It is the
 * source of truth; pubsub is an optimisation on top of it. Every backend passes the shared
 * conformance suite (`conformance.test-suite.ts`).
 */

/** One version of a key: its sequence number and opaque bytes. */
export interface VersionedData {
  /** In `[0, 2^63 - 1]`. */
  seqno: bigint;
  data: Uint8Array;
}

/** Options every async Consensus method takes last. */
export interface CallOptions {
  /** Aborts the call; it then rejects with a `ConsensusError` of code `aborted`. */
  signal?: AbortSignal | undefined;
}

export type CasResult = 'committed' | 'mismatch';

export interface ListKeysOptions extends CallOptions {
  /** How many keys a page holds at most. @default 1000 (at most 10000) */
  pageSize?: number | undefined;
  /** The `nextPageToken` of the previous page; absent for the first page. */
  pageToken?: string | undefined;
}

/**
 * One page of keys. The guarantees are AIP's "soft" list ones: every key that exists for the
 * whole listing appears at least once; order is not guaranteed; a key may appear on two pages;
 * a page may be empty while `nextPageToken` is still set. No token means the listing is done.
 */
export interface ListKeysPage {
  keys: string[];
  nextPageToken?: string;
}

/** Which backend implements a Consensus; used as a metric label. */
export type ConsensusBackend = 'memory' | 'sqlite' | 'postgres' | 'redis';

export interface Consensus {
  readonly backend: ConsensusBackend;
  /** The latest version of `key`, or `undefined` if it has none. */
  head(key: string, options?: CallOptions): Promise<VersionedData | undefined>;
  /**
   * Appends `next` iff the current head's seqno equals `expected` (`null`: the key has no
   * entry) and `next.seqno > expected`. `next.seqno <= expected` is a caller error
   * (`invalid_argument`), not a mismatch.
   */
  compareAndSet(
    key: string,
    expected: bigint | null,
    next: VersionedData,
    options?: CallOptions,
  ): Promise<CasResult>;
  /** Versions with `seqno >= from`, ascending, at most `limit` (an integer >= 1). */
  scan(key: string, from: bigint, limit: number, options?: CallOptions): Promise<VersionedData[]>;
  /**
   * Deletes the versions with `seqno < seqno` and returns how many were deleted. Fails with
   * `failed_precondition` if the key has no versions or `seqno` is above its head. Idempotent.
   */
  truncate(key: string, seqno: bigint, options?: CallOptions): Promise<number>;
  /** Every key, a page at a time; memory use is bounded by the page size. */
  listKeys(options?: ListKeysOptions): Promise<ListKeysPage>;
  /** Releases connections and handles. Idempotent; later calls fail with `closed`. */
  close(): Promise<void>;
}

/** What a backend's `open*Consensus(url, options)` factory takes besides its URL. */
export interface OpenConsensusOptions {
  /** Where backend logs go. @default silent */
  logger?: Logger | undefined;
  /** Metrics go here; never the global registry. @default no metrics */
  registry?: Registry | undefined;
}
