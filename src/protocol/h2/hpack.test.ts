import { describe, expect, it } from 'vitest';
import { createHpackDecoder, encodeHeaderBlock, type HeaderField } from './hpack.js';
import { huffmanDecode } from './huffman.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const REQ1: HeaderField[] = [
  [':method', 'GET'],
  [':scheme', 'http'],
  [':path', '/'],
  [':authority', 'www.example.com'],
];
const REQ2: HeaderField[] = [...REQ1, ['cache-control', 'no-cache']];
const REQ3: HeaderField[] = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':path', '/index.html'],
  [':authority', 'www.example.com'],
  ['custom-key', 'custom-value'],
];

describe('HPACK decoder: RFC 7541 Appendix C', () => {
  it('C.3: requests without Huffman, one table across them (sizes 57, 110, 164)', () => {
    const d = createHpackDecoder();
    expect(d.decode(hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'))).toEqual(REQ1);
    expect(d.tableSize).toBe(57);
    expect(d.decode(hex('8286 84be 5808 6e6f 2d63 6163 6865'))).toEqual(REQ2);
    expect(d.tableSize).toBe(110);
    expect(
      d.decode(hex('8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65')),
    ).toEqual(REQ3);
    expect(d.tableSize).toBe(164);
  });

  it('C.4: the same requests Huffman-coded', () => {
    const d = createHpackDecoder();
    expect(d.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'))).toEqual(REQ1);
    expect(d.decode(hex('8286 84be 5886 a8eb 1064 9cbf'))).toEqual(REQ2);
    expect(d.decode(hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'))).toEqual(
      REQ3,
    );
    expect(d.tableSize).toBe(164);
  });

  it('C.6: Huffman-coded responses in a 256-byte table, evicting (sizes 222, 222, 215)', () => {
    const d = createHpackDecoder(256);
    const date1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
    const loc = 'https://www.example.com';
    expect(
      d.decode(
        hex(`4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`),
      ),
    ).toEqual([
      [':status', '302'],
      ['cache-control', 'private'],
      ['date', date1],
      ['location', loc],
    ]);
    expect(d.tableSize).toBe(222);
    expect(d.decode(hex('4883 640e ffc1 c0bf'))).toEqual([
      [':status', '307'],
      ['cache-control', 'private'],
      ['date', date1],
      ['location', loc],
    ]);
    expect(d.tableSize).toBe(222);
    expect(
      d.decode(
        hex(`88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
             9587 3160 65c0 03ed 4ee5 b106 3d50 07`),
      ),
    ).toEqual([
      [':status', '200'],
      ['cache-control', 'private'],
      ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
      ['location', loc],
      ['content-encoding', 'gzip'],
      ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
    ]);
    expect(d.tableSize).toBe(215);
  });

  it('C.1: integers past their prefix (1337 in a 5-bit prefix, as a size update)', () => {
    // 0x3f 0x9a 0x0a: a size update (001xxxxx) of 1337, within a 4096 table.
    const d = createHpackDecoder();
    expect(d.decode(hex('3f9a0a'))).toEqual([]);
    expect(d.decode(hex('3fe11f'))).toEqual([]); // 4096 itself
    expect(d.decode(hex('3fe21f'))).toMatch(/over our 4096/);
  });
});

describe('HPACK decoder: bad blocks are errors, never throws', () => {
  const cases: [string, string, RegExp][] = [
    ['index 0', '80', /out of the tables/],
    ['index past the tables', 'be', /out of the tables/],
    ['truncated integer', '0f', /truncated/],
    ['truncated name', '0005abc', /truncated/],
    ['truncated value', '0001610561', /truncated/],
    ['size update after a field', '823f9a0a', /after a field/],
    ['Huffman padding not ones', '0001618100', /padding/],
    ['integer overflow', `0f${'ff'.repeat(8)}01`, /truncated/],
  ];
  for (const [name, bytes, error] of cases) {
    it(name, () => {
      expect(createHpackDecoder().decode(hex(bytes))).toMatch(error);
    });
  }

  it('caps the decoded header list (a small block indexing a big entry many times)', () => {
    const d = createHpackDecoder(4096, 1000);
    const big = Buffer.concat([hex('40 01 78 7f 85 06'), Buffer.alloc(900, 0x61)]);
    expect(d.decode(big)).toHaveLength(1);
    expect(d.decode(hex('bebe'))).toMatch(/header list over 1000/);
  });

  it('random bytes give fields or an error', () => {
    let seed = 7;
    const rnd = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 3000; i++) {
      const d = createHpackDecoder();
      const block = Buffer.from(Array.from({ length: rnd() % 40 }, () => rnd() & 0xff));
      const out = d.decode(block);
      expect(typeof out === 'string' || Array.isArray(out)).toBe(true);
    }
  });
});

describe('Huffman', () => {
  it('decodes a string and rejects EOS and bad padding', () => {
    // "www.example.com" from C.4.1.
    expect(String(huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff')))).toBe('www.example.com');
    expect(huffmanDecode(hex('ffffffff'))).toMatch(/EOS|padding/);
  });
});

describe('HPACK encoder: literals without indexing', () => {
  it('round-trips through the decoder and leaves its table empty', () => {
    const fields: HeaderField[] = [
      [':method', 'POST'],
      [':scheme', 'http'],
      [':path', '/mz_persist_client.internal.service.ProtoPersistPubSub/PubSub'],
      [':authority', '127.0.0.1:1234'],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
      ['persist-pubsub-caller-id', 'x'.repeat(300)],
    ];
    const d = createHpackDecoder();
    expect(d.decode(encodeHeaderBlock(fields))).toEqual(fields);
    expect(d.tableSize).toBe(0);
  });
});
