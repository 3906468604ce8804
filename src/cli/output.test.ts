import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createRowWriter, toJsonText } from './output.js';

interface Row {
  id: string;
  n: number;
}

function sink() {
  const out = new PassThrough();
  let text = '';
  out.setEncoding('utf8').on('data', (c: string) => {
    text += c;
  });
  return { out, text: () => text };
}

describe('createRowWriter', () => {
  const columns = [
    { header: 'ID', width: 4, value: (r: Row) => r.id },
    { header: 'N', width: 3, align: 'right' as const, value: (r: Row) => String(r.n) },
  ];

  it('writes a header once, then fixed-width rows; a long value is not cut', async () => {
    const s = sink();
    const w = createRowWriter<Row>({ out: s.out, json: false, columns, toJson: (r) => r });
    await w.write({ id: 'a', n: 1 });
    await w.write({ id: 'abcdef', n: 100 });
    await w.note('done');
    expect(s.text()).toBe('ID      N\na       1\nabcdef  100\ndone\n');
  });

  it('--json writes one object per line and no notes', async () => {
    const s = sink();
    const w = createRowWriter<Row>({ out: s.out, json: true, columns, toJson: (r) => r });
    await w.write({ id: 'a', n: 1 });
    await w.note('ignored');
    expect(s.text()).toBe('{"id":"a","n":1}\n');
  });

  it('a closed pipe (EPIPE) makes it stop quietly', async () => {
    const s = sink();
    const w = createRowWriter<Row>({ out: s.out, json: true, columns, toJson: (r) => r });
    s.out.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    expect(w.closed).toBe(true);
    await w.write({ id: 'a', n: 1 });
    expect(s.text()).toBe('');
  });
});

describe('toJsonText', () => {
  it('writes bigints as strings, Maps as objects and bytes as base64', () => {
    const v = { seqno: 2n ** 63n - 1n, m: new Map([['k', { x: 1n }]]), b: new Uint8Array([1, 2]) };
    expect(toJsonText(v)).toBe('{"seqno":"9223372036854775807","m":{"k":{"x":"1"}},"b":"AQI="}');
  });
});
