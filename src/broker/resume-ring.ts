/**
 * Recent forwarded diffs per shard, so that a subscriber that re-subscribes with
 * `resume_after_seqno = n` (an extension of the reference protocol) gets the diffs after `n`
 * that it missed while it was away, in seqno order, before live ones.
 *
 * Bounded twice: at most `ringSize` entries per shard, and at most `maxTotalBytes` of frames
 * across all shards (the least recently pushed shards' rings are evicted first, approximately:
 * see `evictOldestShards`).
 *
 * The ring keeps the frames' bytes, not the broadcasts: a copy of each frame in a slot of the
 * shard's slab (one buffer per shard, fixed-size slots, seqnos in a `BigUint64Array`), so that
 * it holds no JavaScript object per diff. A ring that held the broadcasts kept every one alive
 * for a full round of the ring (64 pushes per shard, a fraction of a second at high rates, a
 * minute at the reference load): each survived the young generation, was promoted, and died in
 * the old one, and V8 answered with a mark-compact every 200-300 ms, each a 3-8 ms stall, at
 * fan-out 1 from 28k pushes/s (`bench broker --trace-gc`, bench/results/notes.md). The copy is
 * a memcpy of the frame per push (from a broadcast, `FrameSource.copyFrame`: the broker's
 * header and the publisher's bytes, with no frame buffer made for it). Frames larger than
 * `MAX_SLOT_BYTES` (rare) are kept by reference instead, so that one large diff does not widen
 * every slot of its shard.
 */

import type { FrameSource } from './outbound.js';

/** Frames up to this size are copied into the shard's slab; larger ones kept by reference. */
export const MAX_SLOT_BYTES = 2048;
/** Slots are sized in multiples of this, in bytes. */
const SLOT_ALIGN = 64;
/** A new ring's first capacity, in entries (it grows fourfold up to `ringSize`). */
const INITIAL_CAPACITY = 4;

/** A frame held by the ring, as replayed: `frame` is the ring's own copy, the caller's to keep. */
export interface ResumedFrame {
  seqno: bigint;
  frame: Uint8Array;
  /** The connection that pushed it (never replayed to it). */
  sender: object;
}

export type ResumeResult =
  /** The ring reaches back to `n + 1` (or holds nothing newer than `n`): no gap. */
  | { kind: 'complete'; items: ResumedFrame[] }
  /** The ring starts after `n + 1` or is empty: the caller should read Consensus. */
  | { kind: 'gap'; items: ResumedFrame[]; fromSeqno: bigint };

export interface ResumeStore {
  /** Keeps a copy of `frame` (the forwarded gRPC frame) as the shard's newest entry. */
  record(shardId: string, seqno: bigint, frame: Uint8Array | FrameSource, sender: object): void;
  /** The ring's entries with seqno > `afterSeqno`, ascending, without duplicates. */
  replay(shardId: string, afterSeqno: bigint): ResumeResult;
  /** Highest seqno held for a shard. */
  lastSeqno(shardId: string): bigint | undefined;
  /** Bytes of the frames held. */
  readonly totalBytes: number;
  readonly shardCount: number;
}

interface Ring {
  /** Entries live at slots `(head + i) % capacity` for `i < size`, oldest first. */
  head: number;
  size: number;
  capacity: number;
  seqnos: BigUint64Array;
  lengths: Int32Array;
  senders: (object | undefined)[];
  /** Slot `i` is `slab[i * slotBytes, (i + 1) * slotBytes)`. */
  slab: Uint8Array;
  slotBytes: number;
  /** Frames larger than `MAX_SLOT_BYTES`, by slot (allocated on the first one). */
  large: (Uint8Array | undefined)[] | undefined;
  /** Bytes of the frames held. */
  bytes: number;
  /** `clock` at the last record. */
  touched: number;
  /** `clock` when (re)inserted at the young end of the map's order. */
  placed: number;
}

const slotSizeFor = (n: number) => Math.ceil(Math.max(1, n) / SLOT_ALIGN) * SLOT_ALIGN;

function newRing(capacity: number, slotBytes: number, touched: number, placed: number): Ring {
  // One backing store for seqnos, lengths and slots: an ArrayBuffer is a native allocation
  // (zero-filled, tracked as external memory), the dear part of a typed array.
  const memory = new ArrayBuffer(capacity * (8 + 4 + slotBytes));
  return {
    head: 0,
    size: 0,
    capacity,
    seqnos: new BigUint64Array(memory, 0, capacity),
    lengths: new Int32Array(memory, capacity * 8, capacity),
    senders: new Array<object | undefined>(capacity).fill(undefined),
    slab: new Uint8Array(memory, capacity * 12, capacity * slotBytes),
    slotBytes,
    large: undefined,
    bytes: 0,
    touched,
    placed,
  };
}

/** Copies `from`'s entries, oldest first, into a ring of another capacity or slot size. */
function resized(from: Ring, capacity: number, slotBytes: number): Ring {
  const to = newRing(capacity, slotBytes, from.touched, from.placed);
  for (let i = 0; i < from.size; i++) {
    const s = (from.head + i) % from.capacity;
    const len = from.lengths[s]!;
    to.seqnos[i] = from.seqnos[s]!;
    to.lengths[i] = len;
    to.senders[i] = from.senders[s];
    const big = from.large?.[s];
    if (big !== undefined) {
      to.large ??= [];
      to.large[i] = big;
    } else {
      const at = s * from.slotBytes;
      to.slab.set(from.slab.subarray(at, at + len), i * slotBytes);
    }
  }
  to.size = from.size;
  to.bytes = from.bytes;
  return to;
}

/** Forgets the oldest entry. */
function dropOldest(ring: Ring): number {
  const s = ring.head;
  const len = ring.lengths[s]!;
  ring.senders[s] = undefined;
  if (ring.large !== undefined) ring.large[s] = undefined;
  ring.head = (s + 1) % ring.capacity;
  ring.size--;
  ring.bytes -= len;
  return len;
}

export function createResumeStore(options: {
  ringSize: number;
  maxTotalBytes: number;
}): ResumeStore {
  const { ringSize, maxTotalBytes } = options;
  // Map iteration order is insertion order: the oldest placed first (see `evictOldestShards`).
  const rings = new Map<string, Ring>();
  let totalBytes = 0;
  /** Counts records, for the approximate LRU. */
  let clock = 0;

  /**
   * Evicts rings, oldest placed first, until the total is within the budget, giving a second
   * chance to a ring pushed since it was placed (moved to the young end; evicted if met again,
   * unless pushed again): an approximate LRU that costs a push nothing but a stamp. (It was a
   * Map delete and insert per push of a shard a round of pushes old, every push of a
   * round-robin publisher: ~80 ns of the record's ~170.)
   */
  function evictOldestShards(keep: string): void {
    for (const [shardId, ring] of rings) {
      if (totalBytes <= maxTotalBytes) return;
      if (shardId === keep) continue;
      if (ring.touched > ring.placed) {
        rings.delete(shardId);
        rings.set(shardId, ring);
        ring.placed = clock;
        continue;
      }
      totalBytes -= ring.bytes;
      rings.delete(shardId);
    }
  }

  /** Entries of a ring with seqno > `afterSeqno`, ascending, without duplicates; and the lowest. */
  function newer(ring: Ring, afterSeqno: bigint): { items: ResumedFrame[]; minSeqno: bigint } {
    const found: { seqno: bigint; slot: number }[] = [];
    let minSeqno = ring.seqnos[ring.head]!;
    for (let i = 0; i < ring.size; i++) {
      const slot = (ring.head + i) % ring.capacity;
      const seqno = ring.seqnos[slot]!;
      if (seqno < minSeqno) minSeqno = seqno;
      if (seqno > afterSeqno) found.push({ seqno, slot });
    }
    found.sort((a, b) => (a.seqno < b.seqno ? -1 : a.seqno > b.seqno ? 1 : 0));
    const items: ResumedFrame[] = [];
    let last: bigint | undefined;
    for (const { seqno, slot } of found) {
      if (seqno === last) continue;
      last = seqno;
      const at = slot * ring.slotBytes;
      const frame = ring.large?.[slot] ?? ring.slab.slice(at, at + ring.lengths[slot]!);
      items.push({ seqno, frame, sender: ring.senders[slot]! });
    }
    return { items, minSeqno };
  }

  return {
    record(shardId, seqno, frame, sender) {
      if (ringSize === 0) return;
      clock++;
      const raw = frame instanceof Uint8Array;
      const bytes = raw ? frame.length : frame.frameLength;
      const small = bytes <= MAX_SLOT_BYTES;
      let ring = rings.get(shardId);
      if (ring === undefined) {
        ring = newRing(
          Math.min(INITIAL_CAPACITY, ringSize),
          small ? slotSizeFor(bytes) : SLOT_ALIGN,
          clock,
          clock,
        );
        rings.set(shardId, ring);
      } else ring.touched = clock;
      if (small && bytes > ring.slotBytes) {
        // Wider slots (rare: a shard's frames are usually of one size): half again, at least.
        const slotBytes = slotSizeFor(Math.max(bytes, ring.slotBytes * 1.5));
        ring = resized(ring, ring.capacity, slotBytes);
        rings.set(shardId, ring);
      }
      let slot: number;
      if (ring.size === ringSize) {
        // Overwrite the oldest entry in place: no allocation per push once the ring is full.
        const freed = dropOldest(ring);
        totalBytes -= freed;
        slot = (ring.head + ring.size) % ring.capacity;
      } else {
        if (ring.size === ring.capacity) {
          ring = resized(ring, Math.min(ringSize, ring.capacity * 4), ring.slotBytes);
          rings.set(shardId, ring);
        }
        slot = (ring.head + ring.size) % ring.capacity;
      }
      ring.seqnos[slot] = seqno;
      ring.lengths[slot] = bytes;
      ring.senders[slot] = sender;
      if (small) {
        if (raw) ring.slab.set(frame, slot * ring.slotBytes);
        else frame.copyFrame(ring.slab, slot * ring.slotBytes);
        if (ring.large !== undefined) ring.large[slot] = undefined;
      } else {
        ring.large ??= [];
        ring.large[slot] = raw ? frame : frame.frame;
      }
      ring.size++;
      ring.bytes += bytes;
      totalBytes += bytes;
      if (totalBytes > maxTotalBytes) evictOldestShards(shardId);
      // A single shard larger than the whole budget keeps only its newest entry.
      while (totalBytes > maxTotalBytes && ring.size > 1) totalBytes -= dropOldest(ring);
    },
    replay(shardId, afterSeqno) {
      const ring = rings.get(shardId);
      if (ring === undefined || ring.size === 0) {
        return { kind: 'gap', items: [], fromSeqno: afterSeqno + 1n };
      }
      const { items, minSeqno } = newer(ring, afterSeqno);
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
      let max = ring.seqnos[ring.head]!;
      for (let i = 1; i < ring.size; i++) {
        const s = ring.seqnos[(ring.head + i) % ring.capacity]!;
        if (s > max) max = s;
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
