/**
 * Which received diffs are copies of one already passed on: with several replicated brokers
 * (docs/architecture.md "Several brokers") every diff arrives once per broker, and during a
 * GOAWAY handover once per connection (old and new, docs/architecture.md "Client"); only the
 * first copy goes on to shard state. A duplicate is dropped here, before the cache, so it costs
 * no decode, no apply attempt and never a Consensus read.
 *
 * Per shard it remembers the highest seqno passed and a bitmask of the `WINDOW` seqnos below it
 * (a diff may arrive out of order: broker A's copy of 7 before broker B's copy of 6, and 6 must
 * still pass). A seqno older than the window passes: shard state then finds it stale or fills a
 * gap with it, which is correct either way; the filter only saves work, it never decides.
 */

/** Seqnos below the highest that are remembered individually. */
export const DUPLICATE_WINDOW = 32;

interface Seen {
  max: bigint;
  /** Bit `k` set: seqno `max - 1 - k` was passed. */
  below: number;
}

export class DuplicateFilter {
  readonly #shards = new Map<string, Seen>();

  /** True the first time `(shardId, seqno)` is offered (pass it on), false for a copy. */
  firstSeen(shardId: string, seqno: bigint): boolean {
    const s = this.#shards.get(shardId);
    if (s === undefined) {
      this.#shards.set(shardId, { max: seqno, below: 0 });
      return true;
    }
    if (seqno > s.max) {
      const shift = seqno - s.max;
      // The old max becomes bit `shift - 1`; what falls out of the window is forgotten.
      s.below =
        shift > BigInt(DUPLICATE_WINDOW)
          ? 0
          : shift === BigInt(DUPLICATE_WINDOW)
            ? 1 << (DUPLICATE_WINDOW - 1)
            : ((s.below << Number(shift)) | (1 << (Number(shift) - 1))) >>> 0;
      s.max = seqno;
      return true;
    }
    if (seqno === s.max) return false;
    const k = s.max - 1n - seqno;
    if (k >= BigInt(DUPLICATE_WINDOW)) return true;
    const bit = 1 << Number(k);
    if ((s.below & bit) !== 0) return false;
    s.below = (s.below | bit) >>> 0;
    return true;
  }

  /** The shard is no longer followed: forget it. */
  forget(shardId: string): void {
    this.#shards.delete(shardId);
  }
}
