import { describe, expect, it } from 'vitest';
import { DEMO_STAMPS_KEPT, demoModel, nextDemoState } from './demo-model.js';

describe('demoModel', () => {
  it('applies the diff between consecutive states, and round-trips its codecs', () => {
    let s = demoModel.initial();
    for (let i = 1; i <= DEMO_STAMPS_KEPT + 5; i++) {
      const next = nextDemoState(s, 1000 + i + 0.25);
      const d = demoModel.diff(s, next);
      const applied = demoModel.apply(s, demoModel.decodeDiff(demoModel.encodeDiff(d)));
      expect(demoModel.equals(applied, next)).toBe(true);
      s = demoModel.decodeState(demoModel.encodeState(applied));
    }
    expect(s.n).toBe(DEMO_STAMPS_KEPT + 5);
    expect(s.stamps).toHaveLength(DEMO_STAMPS_KEPT);
    expect(s.stamps.at(-1)).toBe(1000 + DEMO_STAMPS_KEPT + 5 + 0.25);
  });

  it('refuses a diff that does not follow, and bytes that are not its own', () => {
    const s = nextDemoState(demoModel.initial(), 1);
    expect(() => demoModel.apply(s, { n: 3, t: 2 })).toThrow(/does not follow/);
    expect(() => demoModel.apply(s, { n: 1, t: 2 })).toThrow(/does not follow/);
    const enc = new TextEncoder();
    expect(() => demoModel.decodeDiff(enc.encode('{"n":"1","t":2}'))).toThrow();
    expect(() => demoModel.decodeDiff(new Uint8Array([0xff, 0xfe]))).toThrow();
    expect(() => demoModel.decodeState(enc.encode('{"n":1,"stamps":[null]}'))).toThrow();
    expect(() => demoModel.decodeState(enc.encode('null'))).toThrow();
    expect(demoModel.equals(s, nextDemoState(demoModel.initial(), 2))).toBe(false);
  });
});
