/**
 * `openConsensus` with the service-backed URL forms: the right backend behind each, the metrics
 * decorator on top when a registry is given, and two instances sharing one registry.
 */
import { randomUUID } from 'node:crypto';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { CONSENSUS_OPS_TOTAL, openConsensus } from '../src/consensus/index.js';
import { requireService, SERVICE_URLS } from './support/services.js';

const data = new Uint8Array([7, 7]);

async function roundTrip(url: string, backend: string): Promise<void> {
  const registry = new Registry();
  const a = await openConsensus(url, { registry });
  const b = await openConsensus(url, { registry });
  try {
    expect(a.backend).toBe(backend);
    const key = `open-${randomUUID()}`;
    expect(await a.compareAndSet(key, null, { seqno: 0n, data })).toBe('committed');
    expect(await b.compareAndSet(key, null, { seqno: 0n, data })).toBe('mismatch');
    expect((await b.head(key))?.seqno).toBe(0n);
    const text = await registry.metrics();
    for (const result of ['committed', 'mismatch']) {
      expect(text).toContain(
        `${CONSENSUS_OPS_TOTAL}{op="compare_and_set",backend="${backend}",result="${result}"} 1`,
      );
    }
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

const pg = await requireService('postgres');
describe.skipIf(!pg)('openConsensus postgres://', () => {
  it('opens Postgres, instrumented', async () => {
    await roundTrip(SERVICE_URLS.postgres, 'postgres');
    await roundTrip(SERVICE_URLS.postgres.replace(/^postgres:/, 'postgresql:'), 'postgres');
  });
});

const redis = await requireService('redis');
describe.skipIf(!redis)('openConsensus redis://', () => {
  it('opens Redis, instrumented', async () => {
    await roundTrip(SERVICE_URLS.redis, 'redis');
  });
});
