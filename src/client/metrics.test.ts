import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { clientMetrics, E2E_LATENCY_BUCKETS_SECONDS } from './metrics.js';
import { createNoopPubSubClient } from './noop-pubsub-client.js';

describe('client metrics', () => {
  it('has a counterpart of every reference client metric, on the given registry only', async () => {
    const registry = new Registry();
    const m = clientMetrics(registry);
    expect(clientMetrics(registry)).toBe(m); // shared by every client on that registry
    const names = (await registry.getMetricsAsJSON()).map((x) => x.name).sort();
    // Reference (Materialize metrics.rs) → ours.
    const counterparts = {
      mz_persist_pubsub_client_grpc_connected: 'persist_pubsub_client_connected',
      mz_persist_pubsub_client_grpc_connection_established_count:
        'persist_pubsub_client_connections_established_total',
      mz_persist_pubsub_client_grpc_connect_call_attempt_count:
        'persist_pubsub_client_connect_attempts_total',
      mz_persist_pubsub_client_grpc_broadcast_recv_lagged_count:
        'persist_pubsub_client_receive_lagged_total',
      mz_persist_pubsub_client_grpc_error_count: 'persist_pubsub_client_errors_total',
      mz_persist_pubsub_client_call_succeeded: 'persist_pubsub_client_call_succeeded_total',
      mz_persist_pubsub_client_call_failed: 'persist_pubsub_client_call_failed_total',
      mz_persist_pubsub_client_call_bytes_sent: 'persist_pubsub_client_call_sent_bytes_total',
      mz_persist_pubsub_client_call_received: 'persist_pubsub_client_call_received_total',
      mz_persist_pubsub_client_approx_diff_apply_latency_seconds:
        'persist_pubsub_client_approx_diff_apply_latency_seconds',
      mz_persist_pubsub_client_receiver_state_push_diff_fast_path:
        'persist_pubsub_client_receiver_state_push_diff_fast_path_total',
      mz_persist_pubsub_client_receiver_state_push_diff_slow_path_succeeded:
        'persist_pubsub_client_receiver_state_push_diff_slow_path_succeeded_total',
      mz_persist_pubsub_client_receiver_state_push_diff_slow_path_failed:
        'persist_pubsub_client_receiver_state_push_diff_slow_path_failed_total',
    };
    for (const ours of Object.values(counterparts)) expect(names).toContain(ours);
    expect(names).toContain('persist_pubsub_e2e_latency_seconds');
    expect(names.every((n) => n.startsWith('persist_pubsub_'))).toBe(true);
  });

  it('e2e latency buckets span 50 µs to 10 s', () => {
    expect(E2E_LATENCY_BUCKETS_SECONDS[0]).toBe(0.00005);
    expect(E2E_LATENCY_BUCKETS_SECONDS.at(-1)).toBe(10);
    expect([...E2E_LATENCY_BUCKETS_SECONDS].sort((a, b) => a - b)).toEqual([
      ...E2E_LATENCY_BUCKETS_SECONDS,
    ]);
  });

  it('the no-op client drops pushes without counting them and refcounts subscriptions', async () => {
    const registry = new Registry();
    const c = createNoopPubSubClient({ registry });
    expect(c.push('s1', 1n, new Uint8Array())).toBe(false);
    const t1 = c.subscribe('s1');
    const t2 = c.subscribe('s1');
    t1.release();
    expect(c.subscribedShards()).toEqual(['s1']);
    t2.release();
    expect(c.subscribedShards()).toEqual([]);
    const dropped = await registry
      .getSingleMetric('persist_pubsub_client_pushes_dropped_total')
      ?.get();
    // Never meant to be sent (polling only): no drop is counted (issue 15, item 7a).
    expect(dropped?.values).toEqual([]);
    const events = c.events()[Symbol.asyncIterator]();
    await c.close();
    expect(await events.next()).toEqual({ value: undefined, done: true });
  });
});
