/**
 * Recent forwarded diffs per shard, so that a subscriber that re-subscribes with
 * `resume_after_seqno = n` (an extension of the reference protocol) gets the diffs after `n`
 * that it missed while it was away, in seqno order, before live ones.
 *
 * Bounded twice: at most `ringSize` entries per shard, and at most `maxTotalBytes` across all
 * shards (the least recently pushed shards' rings are evicted first, approximately: see
 * `record`). The entries are the
 * broadcasts themselves, so a ring costs no extra copy of a frame.
 */
export interface ResumeEntry<T> {
  seqno: bigint;
  item: T;
  bytes: number;
}

export type ResumeResult<T> =
  /** The ring reaches back to `n + 1` (or holds nothing newer than `n`): no gap. */
  | { kind: 'complete'; items: T[] }
  /** The ring starts after `n + 1` or is empty: the caller should read Consensus. */
  | { kind: 'gap'; items: T[]; fromSeqno: bigint };

export interface ResumeStore<T> {
  record(shardId: string, seqno: bigint, item: T, bytes: number): void;
  /** The ring's entries with seqno > `afterSeqno`, ascending, without duplicates. */
  replay(shardId: string, afterSeqno: bigint): ResumeResult<T>;
  /** Highest seqno held for a shard. */
  lastSeqno(shardId: string): bigint | undefined;
  readonly totalBytes: number;
  readonly shardCount: number;
}

interface Ring<T> {
  entries: (ResumeEntry<T> | undefined)[];
  /** Index of the oldest entry. */
  head: number;
  size: number;
  bytes: number;
  /** `clock` when last moved to the young end of the LRU order. */
  touched: number;
}

export function createResumeStore<T>(options: {
  ringSize: number;
  maxTotalBytes: number;
}): ResumeStore<T> {
  const { ringSize, maxTotalBytes } = options;
  // Map iteration order is insertion order: re-inserting on every push keeps it LRU by push.
  const rings = new Map<string, Ring<T>>();
  let totalBytes = 0;
  /** Counts records, for the approximate LRU. */
  let clock = 0;

  function evictOldestShards(keep: string): void {
    for (const [shardId, ring] of rings) {
      if (totalBytes <= maxTotalBytes) return;
      if (shardId === keep) continue;
      totalBytes -= ring.bytes;
      rings.delete(shardId);
    }
  }

  return {
    record(shardId, seqno, item, bytes) {
      if (ringSize === 0) return;
      clock++;
      let ring = rings.get(shardId);
      if (ring === undefined) {
        ring = { entries: [], head: 0, size: 0, bytes: 0, touched: clock };
        rings.set(shardId, ring);
      } else if (clock - ring.touched > rings.size) {
        // Approximate LRU: move a shard to the young end only if it has aged by a full round
        // of pushes, so a hot shard does not pay a Map delete + insert on every push.
        rings.delete(shardId);
        rings.set(shardId, ring);
        ring.touched = clock;
      }
      if (ring.size === ringSize) {
        // Overwrite the oldest entry in place: no allocation per push once the ring is full.
        const old = ring.entries[ring.head]!;
        ring.bytes -= old.bytes;
        totalBytes -= old.bytes;
        old.seqno = seqno;
        old.item = item;
        old.bytes = bytes;
        ring.head = (ring.head + 1) % ringSize;
      } else {
        ring.entries[(ring.head + ring.size) % ringSize] = { seqno, item, bytes };
        ring.size++;
      }
      ring.bytes += bytes;
      totalBytes += bytes;
      if (totalBytes > maxTotalBytes) evictOldestShards(shardId);
      // A single shard larger than the whole budget keeps only its newest entry.
      while (totalBytes > maxTotalBytes && ring.size > 1) {
        const old = ring.entries[ring.head]!;
        ring.entries[ring.head] = undefined;
        ring.head = (ring.head + 1) % ringSize;
        ring.size--;
        ring.bytes -= old.bytes;
        totalBytes -= old.bytes;
      }
    },
    replay(shardId, afterSeqno) {
      const ring = rings.get(shardId);
      if (ring === undefined || ring.size === 0) {
        return { kind: 'gap', items: [], fromSeqno: afterSeqno + 1n };
      }
      const newer: ResumeEntry<T>[] = [];
      let minSeqno = ring.entries[ring.head]!.seqno;
      for (let i = 0; i < ring.size; i++) {
        const e = ring.entries[(ring.head + i) % ringSize]!;
        if (e.seqno < minSeqno) minSeqno = e.seqno;
        if (e.seqno > afterSeqno) newer.push(e);
      }
      newer.sort((a, b) => (a.seqno < b.seqno ? -1 : a.seqno > b.seqno ? 1 : 0));
      const items: T[] = [];
      let last: bigint | undefined;
      for (const e of newer) {
        if (e.seqno !== last) items.push(e.item);
        last = e.seqno;
      }
      if (minSeqno > afterSeqno + 1n) {
        return { kind: 'gap', items, fromSeqno: afterSeqno + 1n };
      }
      return { kind: 'complete', items };
    },
    lastSeqno(shardId) {
      // Scanned on demand (admin listings): a BigInt comparison costs hundreds of ns in V8, too
      // much to keep a running maximum on every push.
      const ring = rings.get(shardId);
      if (ring === undefined || ring.size === 0) return undefined;
      let max = ring.entries[ring.head]!.seqno;
      for (let i = 1; i < ring.size; i++) {
        const e = ring.entries[(ring.head + i) % ringSize]!;
        if (e.seqno > max) max = e.seqno;
      }
      return max;
    },
    get totalBytes() {
      return totalBytes;
    },
    get shardCount() {
      return rings.size;
    },
  };
}
