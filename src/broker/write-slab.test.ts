import { describe, expect, it } from 'vitest';
import { createWriteSlab, WRITE_SLAB_MAX_REGION_BYTES } from './write-slab.js';

describe('write slab', () => {
  it('hands out the same bytes again after a write that completed at once', () => {
    const slab = createWriteSlab(1024);
    const a = slab.take(100);
    slab.written(false);
    const b = slab.take(200);
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteOffset).toBe(a.byteOffset);
    expect(b.length).toBe(200);
  });

  it('never hands out a pending write’s bytes again, across slabs', () => {
    const slab = createWriteSlab(1024);
    const regions: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      const r = slab.take(100);
      r.fill(i);
      slab.written(true);
      regions.push(r);
    }
    // 10 regions fit in each slab of 1 KiB: four slabs, no region overlapping another.
    expect(new Set(regions.map((r) => r.buffer)).size).toBe(4);
    regions.forEach((r, i) => {
      expect(r.every((x) => x === i)).toBe(true);
    });
  });

  it('takes a new slab when the rest is too small, and one as large as a region if needed', () => {
    const slab = createWriteSlab(1024);
    const a = slab.take(900);
    slab.written(true);
    const b = slab.take(200);
    expect(b.buffer).not.toBe(a.buffer);
    slab.written(false);
    const big = slab.take(WRITE_SLAB_MAX_REGION_BYTES);
    expect(big.length).toBe(WRITE_SLAB_MAX_REGION_BYTES);
  });
});
