/**
 * HPACK (RFC 7541) for our HTTP/2 sessions, client and server: a full decoder (static and
 * dynamic tables, Huffman, dynamic table size updates) for the peer's header blocks, and a minimal
 * encoder that writes every field as a literal without indexing (so it keeps no table state
 * the peer must mirror), with the static table's name index where there is one. The decoder
 * reads untrusted bytes: every malformed block is a returned error (a COMPRESSION_ERROR for
 * the session), never a throw.
 */
import { huffmanDecode } from './huffman.js';

/** RFC 7541 Appendix A, indices 1-61. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

/** RFC 7541 §4.1: an entry's size is its name and value octets plus 32. */
const ENTRY_OVERHEAD = 32;
/** SETTINGS_HEADER_TABLE_SIZE's initial value, which our sessions never change. */
export const DEFAULT_HEADER_TABLE_SIZE = 4096;

export type HeaderField = readonly [name: string, value: string];

export interface HpackDecoder {
  /**
   * Decodes one complete header block (HEADERS plus its CONTINUATIONs). Returns the fields in
   * order, or an error description. After an error the decoder's table is unusable (the
   * session ends with COMPRESSION_ERROR, RFC 7541 §2.3.3).
   */
  decode(block: Uint8Array): HeaderField[] | string;
  /** The dynamic table's current size in octets (RFC 7541 §4.1), for tests. */
  readonly tableSize: number;
}

/**
 * `maxTableSize`: the SETTINGS_HEADER_TABLE_SIZE we advertised (the most the peer may use).
 * `maxHeaderListBytes`: the most a decoded block may hold (names + values + 32 per field), so
 * a small block that indexes large entries many times cannot make us build a huge list.
 */
export function createHpackDecoder(
  maxTableSize = DEFAULT_HEADER_TABLE_SIZE,
  maxHeaderListBytes = 65_536,
): HpackDecoder {
  /** Newest first: dynamic index 62 is `table[0]`. */
  const table: HeaderField[] = [];
  let size = 0;
  let limit = maxTableSize;

  const evictTo = (max: number): void => {
    while (size > max) {
      const [n, v] = table.pop()!;
      size -= n.length + v.length + ENTRY_OVERHEAD;
    }
  };
  const entry = (index: number): HeaderField | undefined => {
    if (index <= 0) return undefined;
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1];
    return table[index - STATIC_TABLE.length - 1];
  };

  return {
    get tableSize() {
      return size;
    },
    decode(block) {
      const out: HeaderField[] = [];
      let pos = 0;
      let listBytes = 0;
      /** RFC 7541 §4.2: a size update may only open a block. */
      let fieldSeen = false;

      /** RFC 7541 §5.1. Returns -1 past the end or when the value exceeds 2^28. */
      const int = (prefixBits: number): number => {
        const max = (1 << prefixBits) - 1;
        let v = block[pos++]! & max;
        if (v < max) return v;
        let shift = 0;
        for (;;) {
          if (pos >= block.length || shift > 21) return -1;
          const b = block[pos++]!;
          v += (b & 0x7f) * 2 ** shift;
          shift += 7;
          if ((b & 0x80) === 0) return v;
        }
      };
      /** RFC 7541 §5.2: a string literal, or an error description. */
      const str = (): string | { error: string } => {
        if (pos >= block.length) return { error: 'truncated string literal' };
        const huffman = (block[pos]! & 0x80) !== 0;
        const len = int(7);
        if (len < 0 || pos + len > block.length) return { error: 'truncated string literal' };
        const raw = block.subarray(pos, pos + len);
        pos += len;
        if (!huffman) return Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString('latin1');
        const decoded = huffmanDecode(raw);
        return typeof decoded === 'string' ? { error: decoded } : decoded.toString('latin1');
      };

      while (pos < block.length) {
        const first = block[pos]!;
        let name: string;
        let value: string;
        let index = false;
        if ((first & 0x80) !== 0) {
          // Indexed field (§6.1).
          const e = entry(int(7));
          if (e === undefined) return 'indexed field with an index out of the tables';
          [name, value] = e;
        } else if ((first & 0xe0) === 0x20) {
          // Dynamic table size update (§6.3).
          if (fieldSeen) return 'dynamic table size update after a field';
          const n = int(5);
          if (n < 0 || n > maxTableSize)
            return `dynamic table size update to ${n} over our ${maxTableSize}`;
          limit = n;
          evictTo(limit);
          continue;
        } else {
          // Literal with incremental indexing (§6.2.1, 6-bit index), without indexing
          // (§6.2.2) or never indexed (§6.2.3, 4-bit index).
          index = (first & 0xc0) === 0x40;
          const nameIndex = int(index ? 6 : 4);
          if (nameIndex < 0) return 'truncated field';
          if (nameIndex === 0) {
            const n = str();
            if (typeof n !== 'string') return n.error;
            name = n;
          } else {
            const e = entry(nameIndex);
            if (e === undefined) return 'literal field with a name index out of the tables';
            name = e[0];
          }
          const v = str();
          if (typeof v !== 'string') return v.error;
          value = v;
        }
        fieldSeen = true;
        listBytes += name.length + value.length + ENTRY_OVERHEAD;
        if (listBytes > maxHeaderListBytes) {
          return `header list over ${maxHeaderListBytes} bytes`;
        }
        out.push([name, value]);
        if (index) {
          const entrySize = name.length + value.length + ENTRY_OVERHEAD;
          // §4.4: an entry larger than the table empties it and is not added.
          evictTo(Math.max(0, limit - entrySize));
          if (entrySize <= limit) {
            table.unshift([name, value]);
            size += entrySize;
          }
        }
      }
      return out;
    },
  };
}

const STATIC_NAME_INDEX = new Map<string, number>();
STATIC_TABLE.forEach(([n], i) => {
  if (!STATIC_NAME_INDEX.has(n)) STATIC_NAME_INDEX.set(n, i + 1);
});

function pushInt(out: number[], prefixBits: number, first: number, v: number): void {
  const max = (1 << prefixBits) - 1;
  if (v < max) {
    out.push(first | v);
    return;
  }
  out.push(first | max);
  let r = v - max;
  while (r >= 0x80) {
    out.push((r & 0x7f) | 0x80);
    r = Math.floor(r / 0x80);
  }
  out.push(r);
}

function pushString(out: number[], s: string): void {
  const bytes = Buffer.from(s, 'latin1');
  pushInt(out, 7, 0, bytes.length);
  for (const b of bytes) out.push(b);
}

/**
 * A header block of literal fields without indexing (RFC 7541 §6.2.2): names lower-case
 * (HTTP/2 requires it), the static table's name index where there is one, no Huffman.
 */
export function encodeHeaderBlock(fields: readonly HeaderField[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const index = STATIC_NAME_INDEX.get(name);
    if (index !== undefined) {
      pushInt(out, 4, 0, index);
    } else {
      pushInt(out, 4, 0, 0);
      pushString(out, name);
    }
    pushString(out, value);
  }
  return Buffer.from(out);
}
