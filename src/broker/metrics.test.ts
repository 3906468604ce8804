import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createBrokerMetrics } from './metrics.js';

function setup(maxCallerIdLabels: number) {
  const registry = new Registry();
  let conns = 0;
  const metrics = createBrokerMetrics(
    registry,
    {
      activeConnections: () => conns,
      tcpConnections: () => 0,
      shards: () => 0,
      subscriptions: () => 0,
      queuedMessages: () => 0,
      queuedBytes: () => 0,
      resumeRingBytes: () => 0,
      authTokens: () => 0,
    },
    maxCallerIdLabels,
  );
  return { registry, metrics, setConns: (n: number) => (conns = n) };
}

describe('broker metrics', () => {
  it('caps distinct caller-id labels, folding the rest into "other"', () => {
    const { metrics } = setup(2);
    expect(metrics.callerLabel('a')).toBe('a');
    expect(metrics.callerLabel('b')).toBe('b');
    expect(metrics.callerLabel('c')).toBe('other');
    expect(metrics.callerLabel('a')).toBe('a');
  });

  it('mirrors plain-number stats into counters and gauges only when scraped', async () => {
    const { registry, metrics, setConns } = setup(10);
    metrics.stats.broadcastedDiffs += 5;
    metrics.stats.drops.queue_full += 2;
    metrics.callerCounts('env-1').push += 3;
    setConns(7);
    const text = await registry.metrics();
    expect(text).toMatch(/^persist_pubsub_server_broadcasted_diffs_total 5$/m);
    expect(text).toMatch(/^persist_pubsub_server_dropped_diffs_total\{reason="queue_full"\} 2$/m);
    expect(text).toMatch(
      /^persist_pubsub_server_caller_calls_total\{caller_id="env-1",call="push"\} 3$/m,
    );
    expect(text).toMatch(/^persist_pubsub_server_active_connections 7$/m);
    metrics.stats.broadcastedDiffs += 1;
    expect(await registry.metrics()).toMatch(/^persist_pubsub_server_broadcasted_diffs_total 6$/m);
  });

  it("counts a scoped token's refusals by caller, call and reason", async () => {
    const { registry, metrics } = setup(10);
    metrics.refused('reader', 'push', 'permission_denied');
    metrics.refused('reader', 'push', 'permission_denied');
    metrics.refused('reader', 'stream', 'revoked');
    const text = await registry.metrics();
    expect(text).toMatch(
      /^persist_pubsub_server_refused_total\{caller_id="reader",call="push",reason="permission_denied"\} 2$/m,
    );
    expect(text).toMatch(
      /^persist_pubsub_server_refused_total\{caller_id="reader",call="stream",reason="revoked"\} 1$/m,
    );
  });
});
