/**
 * The HPACK Huffman code (RFC 7541 §5.2, Appendix B), decode only. The code is canonical: it is
 * fully given by each symbol's code length (below, from Appendix B, symbols 0-255, then EOS
 * with 30 bits), codes of one length being consecutive in symbol order; the decoding tree is
 * built from the lengths once, on first use. Tested against the Appendix C examples.
 */

/** Code length in bits of each octet 0-255 (RFC 7541 Appendix B). */
const CODE_BITS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
  28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5,
  6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6,
  7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23,
  23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22,
  22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22,
  23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27,
  27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25,
  24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
];
const EOS = 256;
const EOS_BITS = 30;

/**
 * The decoding tree as a flat array: node `n` has children at `tree[2n]` (bit 0) and
 * `tree[2n + 1]` (bit 1); a child < 0 is a leaf holding `~symbol`; 0 is no child yet.
 */
let tree: Int32Array | undefined;

function buildTree(): Int32Array {
  const bits = [...CODE_BITS, EOS_BITS];
  const symbols = bits.map((_, s) => s).sort((a, b) => bits[a]! - bits[b]! || a - b);
  const t = new Int32Array(2 * 512);
  let nodes = 1;
  let code = 0;
  let prev = bits[symbols[0]!]!;
  for (const s of symbols) {
    const len = bits[s]!;
    code *= 2 ** (len - prev);
    prev = len;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const slot = 2 * node + (Math.floor(code / 2 ** i) & 1);
      if (i === 0) t[slot] = ~s;
      else {
        if (t[slot] === 0) t[slot] = nodes++;
        node = t[slot]!;
      }
    }
    code++;
  }
  return t;
}

/**
 * Decodes a Huffman-coded string literal into octets, or returns an error description: EOS
 * inside the string, padding longer than 7 bits, or padding that is not the EOS prefix (all
 * ones) are decoding errors (RFC 7541 §5.2).
 */
export function huffmanDecode(input: Uint8Array): Buffer | string {
  tree ??= buildTree();
  const t = tree;
  const out: number[] = [];
  let node = 0;
  /** Bits read since the last symbol, and whether they were all ones. */
  let depth = 0;
  let ones = true;
  for (let i = 0; i < input.length; i++) {
    const byte = input[i]!;
    for (let b = 7; b >= 0; b--) {
      const bit = (byte >> b) & 1;
      const next = t[2 * node + bit]!;
      depth++;
      ones &&= bit === 1;
      if (next < 0) {
        const sym = ~next;
        if (sym === EOS) return 'EOS in a Huffman-coded string';
        out.push(sym);
        node = 0;
        depth = 0;
        ones = true;
      } else {
        node = next;
      }
    }
  }
  if (depth > 7) return 'Huffman padding longer than 7 bits';
  if (!ones) return 'Huffman padding is not the EOS prefix';
  return Buffer.from(out);
}
