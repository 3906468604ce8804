import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { TallyCounter, TallyHistogram } from './tally.js';

describe('tally metrics', () => {
  it('a tally counter scrapes exactly as a prom-client counter fed the same increments', async () => {
    const a = new Registry();
    const b = new Registry();
    const tally = new TallyCounter({
      name: 'x_total',
      help: 'h',
      labelNames: ['k'],
      registers: [a],
    });
    const plain = new Counter({ name: 'x_total', help: 'h', labelNames: ['k'], registers: [b] });
    const one = tally.cell({ k: 'one' });
    for (let i = 0; i < 5; i++) {
      one.value++;
      plain.inc({ k: 'one' });
    }
    tally.inc({ k: 'two' }, 3);
    plain.inc({ k: 'two' }, 3);
    expect(await a.metrics()).toBe(await b.metrics());
    one.value += 2; // after a scrape, only the new part is added
    plain.inc({ k: 'one' }, 2);
    expect(await a.metrics()).toBe(await b.metrics());
    tally.remove({ k: 'two' });
    plain.remove({ k: 'two' });
    expect(await a.metrics()).toBe(await b.metrics());
  });

  it('a tally histogram scrapes exactly as a prom-client histogram fed the same values', async () => {
    const a = new Registry();
    const b = new Registry();
    const buckets = [0.001, 0.01, 0.1, 1];
    const config = { name: 'y_seconds', help: 'h', labelNames: ['path'] as const, buckets };
    const tally = new TallyHistogram({ ...config, labelNames: ['path'], registers: [a] });
    const plain = new Histogram({ ...config, labelNames: ['path'], registers: [b] });
    const values = [0, 0.0005, 0.001, 0.002, 0.5, 1, 3, 0.01, 0.0999];
    const cell = tally.cell({ path: 'pubsub' });
    for (const v of values) {
      cell.observe(v);
      plain.observe({ path: 'pubsub' }, v);
    }
    expect(await a.metrics()).toBe(await b.metrics());
    tally.cell({ path: 'poll' }).observe(0.2);
    plain.observe({ path: 'poll' }, 0.2);
    cell.observe(0.003);
    plain.observe({ path: 'pubsub' }, 0.003);
    expect(await a.metrics()).toBe(await b.metrics());
    expect(await tally.metric.get()).toEqual(await plain.get());
  });

  it('a histogram without labels, and one never observed, scrape as prom-client', async () => {
    const a = new Registry();
    const b = new Registry();
    const tally = new TallyHistogram({ name: 'z', help: 'h', buckets: [1, 2], registers: [a] });
    new Histogram({ name: 'z', help: 'h', buckets: [1, 2], registers: [b] });
    expect(await a.metrics()).toBe(await b.metrics());
    tally.cell().observe(1.5);
    const plain = b.getSingleMetric('z') as Histogram;
    plain.observe(1.5);
    expect(await a.metrics()).toBe(await b.metrics());
  });
});
