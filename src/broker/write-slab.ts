/**
 * Where the `own` HTTP/2 server copies a flush before its one socket write (`h2-server-session.ts`):
 * a slab shared by every session of the server, handed out a region at a time.
 *
 * A region is written once and goes to one `socket.write`. If that write completed before
 * `write` returned (the socket's `writableLength` is 0 again: the kernel took every byte, and
 * a `Writable` is done with a chunk once its write has completed), the next region starts at
 * the same place, so a broker whose subscribers keep up writes every flush from the same few
 * KiB: no buffer and no write request per frame (as the corked per-frame writes it replaces
 * had), and no new external memory per flush (which, as a fresh `Buffer` per flush, once drew a
 * mark-compact every few hundred ms: bench/results/notes.md, "Broker"). A write still pending
 * keeps its region: the next one starts after it, and a new slab is taken when the rest is too
 * small (the old one lives on in the pending writes only). The session copies only for a socket
 * with nothing unwritten (a flush for a socket that is behind is written corked over the frames
 * themselves), so a slow subscriber pins at most its one last region, and slabs are not taken at
 * the delivery rate while subscribers are behind.
 */

/** Bytes of one slab. */
export const WRITE_SLAB_BYTES = 256 * 1024;
/** The largest region handed out; a larger flush is written another way (corked). */
export const WRITE_SLAB_MAX_REGION_BYTES = 64 * 1024;

export interface WriteSlab {
  /**
   * A region of `bytes` (at most `WRITE_SLAB_MAX_REGION_BYTES`) that no pending write uses, for
   * the caller to fill and write at once, then to report with `written`.
   */
  take(bytes: number): Buffer;
  /**
   * The region last taken went to a socket write; `pending`: that write had not completed when
   * `write` returned (its region must stay untouched).
   */
  written(pending: boolean): void;
}

export function createWriteSlab(slabBytes: number = WRITE_SLAB_BYTES): WriteSlab {
  // Never from Node's pool: a slab is its own memory.
  let slab = Buffer.allocUnsafeSlow(slabBytes);
  let used = 0;
  let taken = 0;
  return {
    take(bytes) {
      if (slab.length - used < bytes) {
        slab = Buffer.allocUnsafeSlow(Math.max(slabBytes, bytes));
        used = 0;
      }
      taken = bytes;
      return slab.subarray(used, used + bytes);
    },
    written(pending) {
      if (pending) used += taken;
      taken = 0;
    },
  };
}
