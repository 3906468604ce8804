import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { sumMetric, withLabels } from './sum-metric.js';

describe('sumMetric', () => {
  it('sums a counter over the series whose labels pass, 0 for a name not registered', async () => {
    const registry = new Registry();
    const c = new Counter({
      name: 'c_total',
      help: 'h',
      labelNames: ['reason'],
      registers: [registry],
    });
    c.inc({ reason: 'poll' }, 3);
    c.inc({ reason: 'fetch' }, 4);
    expect(await sumMetric(registry, 'c_total')).toBe(7);
    expect(await sumMetric(registry, 'c_total', withLabels({ reason: 'poll' }))).toBe(3);
    expect(await sumMetric(registry, 'missing_total')).toBe(0);
  });

  it("counts a histogram's observations, not its buckets or sum", async () => {
    const registry = new Registry();
    const h = new Histogram({
      name: 'lat_seconds',
      help: 'h',
      labelNames: ['path'],
      buckets: [0.1, 1],
      registers: [registry],
    });
    h.observe({ path: 'pubsub' }, 0.05);
    h.observe({ path: 'pubsub' }, 5);
    h.observe({ path: 'poll' }, 0.5);
    expect(await sumMetric(registry, 'lat_seconds')).toBe(3);
    expect(await sumMetric(registry, 'lat_seconds', withLabels({ path: 'pubsub' }))).toBe(2);
  });
});
