import { describe, expect, it } from 'vitest';
import { formatRow, percentile, phaseAt, ROW_HEADER, summarizePhases } from './demo-report.js';

describe('percentile', () => {
  it('is the nearest rank of a sorted list', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 0.5)).toBe(50);
    expect(percentile(xs, 0.99)).toBe(99);
    expect(percentile(xs, 1)).toBe(100);
    expect(percentile([7], 0.99)).toBe(7);
    expect(percentile([], 0.5)).toBeNaN();
  });
});

describe('phaseAt', () => {
  const s = { offAtMs: 10_000, onAtMs: 20_000 };
  it('splits the run at the switches, with a settle window after each', () => {
    expect(phaseAt(9_999, s, 1000)).toBe('pubsub on');
    expect(phaseAt(10_000, s, 1000)).toBe('switching');
    expect(phaseAt(11_000, s, 1000)).toBe('pubsub off');
    expect(phaseAt(20_500, s, 1000)).toBe('switching');
    expect(phaseAt(21_000, s, 1000)).toBe('pubsub on again');
    expect(phaseAt(50_000, {}, 1000)).toBe('pubsub on');
    expect(phaseAt(50_000, { offAtMs: 10_000 }, 1000)).toBe('pubsub off');
  });
});

describe('summarizePhases', () => {
  it('groups latency by commit time and rates by whole rows inside a phase', () => {
    const switches = { offAtMs: 3000, onAtMs: 6000 };
    const samples: [number, number][] = [
      [500, 1],
      [1500, 3],
      [2500, 2],
      [3500, 900], // switching
      [4500, 600],
      [5500, 500],
      [6200, 300], // switching
      [7500, 2],
    ];
    const updates: [number, number][] = samples.map(([t]) => [t, 10]);
    const row = (endMs: number, reads: number, polls: number) => ({
      t: endMs / 1000,
      pubsub: 'on' as const,
      updatesPerS: 0,
      updateP50Ms: 0,
      p50Ms: 0,
      p99Ms: 0,
      readsPerS: reads,
      pollsPerS: polls,
      drops: 0,
      errors: 0,
      readersConnected: 2,
      endMs,
      reads,
      writerReads: 2 * reads,
      polls,
    });
    const rows = [
      row(1000, 10, 0),
      row(2000, 0, 0),
      row(3000, 2, 0),
      row(4000, 9, 9),
      row(5000, 40, 8),
      row(6000, 30, 6),
      row(7000, 5, 0),
      row(8000, 1, 0),
    ];
    const out = summarizePhases(samples, updates, rows, switches, 1000);
    expect(out.map((p) => p.phase)).toEqual([
      'pubsub on',
      'pubsub off',
      'pubsub on again',
      'switching',
    ]);
    const [on, off, again, switching] = out;
    expect(on).toMatchObject({
      samples: 3,
      p50Ms: 2,
      p99Ms: 3,
      readsPerS: 5, // rows ending at 1 s and 2 s (the 3 s row ends at the switch)
      pollsPerS: 0,
      writerReadsPerS: 10,
      updateP50Ms: 10,
    });
    // Only the row from 4 s to 5 s lies wholly inside "pubsub off".
    expect(off).toMatchObject({ samples: 2, p50Ms: 500, p99Ms: 600, readsPerS: 40, pollsPerS: 8 });
    expect(again).toMatchObject({ samples: 1, p50Ms: 2, readsPerS: 1 });
    expect(switching).toMatchObject({ samples: 2, p50Ms: 300, p99Ms: 900 });
  });
});

describe('formatRow', () => {
  it('lines up under the header', () => {
    const line = formatRow(
      {
        t: 12,
        pubsub: 'off',
        updatesPerS: 40,
        updateP50Ms: 8.5,
        p50Ms: 612,
        p99Ms: 1250,
        readsPerS: 40,
        pollsPerS: 8,
        drops: 0,
        errors: 0,
        readersConnected: 0,
      },
      2,
    );
    expect(line.length).toBe(ROW_HEADER.length);
    expect(line.split(/ +/).filter(Boolean)).toEqual([
      '12',
      'off',
      '40',
      '8.50',
      '612',
      '1250',
      '40',
      '8',
      '0',
      '0',
      '0/2',
    ]);
  });
});
