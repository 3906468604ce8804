import { Gauge, type MetricValueWithName, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  CONSENSUS_CAS_MISMATCHES_TOTAL,
  CONSENSUS_OP_DURATION_SECONDS,
  CONSENSUS_OPS_TOTAL,
  instrumentConsensus,
} from './instrument.js';
import { createMemoryConsensus } from './memory.js';

const data = new Uint8Array([1]);

async function values(registry: Registry, name: string) {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`${name} is not registered`);
  return (await metric.get()).values as MetricValueWithName<string>[];
}

/** A clock that advances by `stepMs` every time it is read. */
function steppingClock(stepMs: number) {
  let now = 0;
  return () => {
    const t = now;
    now += stepMs;
    return t;
  };
}

describe('instrumentConsensus', () => {
  it('counts each operation by result and error code', async () => {
    const registry = new Registry();
    const c = instrumentConsensus(createMemoryConsensus(), { registry });
    await c.compareAndSet('k', null, { seqno: 0n, data });
    await c.compareAndSet('k', null, { seqno: 1n, data });
    await c.compareAndSet('k', 5n, { seqno: 6n, data });
    await c.head('k');
    await c.scan('k', 0n, 10);
    await c.listKeys();
    await c.truncate('k', 0n);
    await expect(c.head('')).rejects.toMatchObject({ code: 'invalid_argument' });
    await expect(c.truncate('missing', 0n)).rejects.toMatchObject({
      code: 'failed_precondition',
    });
    const ops = await values(registry, CONSENSUS_OPS_TOTAL);
    const count = (op: string, result: string) =>
      ops.find(
        (v) => v.labels.op === op && v.labels.result === result && v.labels.backend === 'memory',
      )?.value;
    expect(count('compare_and_set', 'committed')).toBe(1);
    expect(count('compare_and_set', 'mismatch')).toBe(2);
    expect(count('head', 'ok')).toBe(1);
    expect(count('head', 'invalid_argument')).toBe(1);
    expect(count('scan', 'ok')).toBe(1);
    expect(count('list_keys', 'ok')).toBe(1);
    expect(count('truncate', 'ok')).toBe(1);
    expect(count('truncate', 'failed_precondition')).toBe(1);
    const mismatches = await values(registry, CONSENSUS_CAS_MISMATCHES_TOTAL);
    expect(mismatches).toEqual([{ labels: { backend: 'memory' }, value: 2 }]);
  });

  it('times calls, failed ones included, with the injected clock', async () => {
    const registry = new Registry();
    const c = instrumentConsensus(createMemoryConsensus(), {
      registry,
      nowMs: steppingClock(3), // every call takes 3 ms
    });
    await c.head('k');
    await c.head('k');
    await expect(c.head('')).rejects.toThrow();
    const hist = await values(registry, CONSENSUS_OP_DURATION_SECONDS);
    const sum = hist.find((v) => v.metricName?.endsWith('_sum') && v.labels.op === 'head');
    const count = hist.find((v) => v.metricName?.endsWith('_count') && v.labels.op === 'head');
    expect(count?.value).toBe(3);
    expect(sum?.value).toBeCloseTo(0.009, 9);
    const le = (bound: number) =>
      hist.find(
        (v) => v.metricName?.endsWith('_bucket') && v.labels.op === 'head' && v.labels.le === bound,
      )?.value;
    expect(le(0.001)).toBe(0);
    expect(le(0.005)).toBe(3);
  });

  it('shares one set of metrics between instances on one registry', async () => {
    const registry = new Registry();
    const a = instrumentConsensus(createMemoryConsensus(), { registry });
    const b = instrumentConsensus(createMemoryConsensus(), { registry });
    await a.head('k');
    await b.head('k');
    const ops = await values(registry, CONSENSUS_OPS_TOTAL);
    expect(ops).toEqual([{ labels: { op: 'head', backend: 'memory', result: 'ok' }, value: 2 }]);
  });

  it('passes results, errors and close through unchanged', async () => {
    const registry = new Registry();
    const inner = createMemoryConsensus();
    const c = instrumentConsensus(inner, { registry });
    expect(c.backend).toBe('memory');
    expect(await c.compareAndSet('k', null, { seqno: 4n, data })).toBe('committed');
    expect((await c.head('k'))?.seqno).toBe(4n);
    await c.close();
    await expect(inner.head('k')).rejects.toMatchObject({ code: 'closed' });
    await expect(c.head('k')).rejects.toMatchObject({ code: 'closed' });
  });

  it('refuses a registry where a metric name has another type', async () => {
    const registry = new Registry();
    registry.registerMetric(
      new Gauge({
        name: CONSENSUS_OPS_TOTAL,
        help: 'x',
        registers: [],
      }),
    );
    expect(() => instrumentConsensus(createMemoryConsensus(), { registry })).toThrow(
      /already registered with another type/,
    );
  });
});
