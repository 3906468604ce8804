/**
 * examples/grafana/persist-pubsub.json against what really runs: a broker, and a persist client
 * (pubsub over gRPC to it, Consensus opened from a URL, one commit) each on its own registry,
 * as in a broker process and an application process. Every metric a query names must be one of
 * theirs (a histogram through its _bucket/_sum/_count series), every label a query groups or
 * filters by must be one that metric has, and the panels cover what an operator needs: broker
 * connections, subscriptions, deliveries and drops; client connection state and reconnects;
 * end-to-end latency quantiles by path; fallback polls and Consensus reads.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { beforeAll, describe, expect, it } from 'vitest';
import { createBroker } from '../src/broker/index.js';
import { createPersistClient } from '../src/client/index.js';
import type { PersistState } from '../src/shard-state/index.js';
import { ROOT } from './support/run-cli.js';

interface Target {
  expr: string;
  refId: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string }> };
}

const dashboard = JSON.parse(
  readFileSync(join(ROOT, 'examples', 'grafana', 'persist-pubsub.json'), 'utf8'),
) as Dashboard;
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const exprs = panels.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })),
);

/** Every exported metric: name → its type and label names (plus what Prometheus adds). */
const exported = new Map<string, { type: string; labels: Set<string> }>();

beforeAll(async () => {
  const brokerRegistry = new Registry();
  const broker = createBroker({ listen: { host: '127.0.0.1', port: 0 }, registry: brokerRegistry });
  await broker.start();
  const clientRegistry = new Registry();
  const client = await createPersistClient({
    consensus: 'sqlite::memory:',
    pubsub: `grpc://127.0.0.1:${broker.address.port}`,
    registry: clientRegistry,
  });
  try {
    const h = await client.openShard<PersistState>('s00000000-0000-0000-0000-00000000da5b');
    await h.update((s) => ({ ...s, upper: [1n] }));
    h.close();
    for (const registry of [brokerRegistry, clientRegistry]) {
      for (const m of registry.getMetricsAsArray()) {
        const metric = m as unknown as {
          name: string;
          labelNames: string[];
          get(): Promise<{ type: string }>;
        };
        const { name, labelNames } = metric;
        const { type } = await metric.get();
        exported.set(name, { type, labels: new Set([...labelNames, 'job', 'instance']) });
      }
    }
  } finally {
    await client.close();
    broker.destroy();
  }
}, 60_000);

/** The exported metric a series name in a query refers to. */
function metricOf(series: string): string | undefined {
  if (exported.has(series)) return series;
  const base = series.replace(/_(bucket|sum|count)$/, '');
  const m = exported.get(base);
  return m !== undefined && (m.type === 'histogram' || m.type === 'summary') ? base : undefined;
}

describe('the Grafana dashboard', () => {
  it('is a dashboard with unique panel ids and a Prometheus data source variable', () => {
    expect(dashboard.uid).toBe('persist-pubsub');
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(dashboard.templating.list.find((v) => v.name === 'datasource')?.type).toBe('datasource');
    expect(exprs.length).toBeGreaterThan(20);
  });

  it('names only metrics the broker and the client really export', () => {
    expect(exported.size).toBeGreaterThan(40);
    const unknown: string[] = [];
    for (const { panel, expr } of exprs) {
      for (const [series] of expr.matchAll(/\bpersist_pubsub_[a-z0-9_]+/g)) {
        if (metricOf(series) === undefined) unknown.push(`${panel}: ${series}`);
      }
    }
    expect(unknown).toEqual([]);
  });

  it('groups and filters only by labels those metrics have', () => {
    const bad: string[] = [];
    for (const { panel, expr } of exprs) {
      const metrics = [...expr.matchAll(/\bpersist_pubsub_[a-z0-9_]+/g)].map(
        ([s]) => exported.get(metricOf(s) as string) as { type: string; labels: Set<string> },
      );
      const labels = [
        ...[...expr.matchAll(/\bby \(([^)]*)\)/g)].flatMap((m) => (m[1] as string).split(',')),
        ...[...expr.matchAll(/[{,]\s*([a-z_]+)\s*=~?/g)].map((m) => m[1] as string),
      ].map((l) => l.trim());
      for (const label of labels) {
        const ok = metrics.every(
          (m) => m.labels.has(label) || (label === 'le' && m.type === 'histogram'),
        );
        if (!ok) bad.push(`${panel}: ${label} in ${expr}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('covers connections, subscriptions, deliveries, drops, reconnects, latency by path, polls and Consensus', () => {
    const all = exprs.map((e) => e.expr).join('\n');
    for (const needed of [
      'persist_pubsub_server_active_connections',
      'persist_pubsub_server_subscriptions',
      'persist_pubsub_server_broadcasted_diffs_total',
      'persist_pubsub_server_dropped_diffs_total',
      'persist_pubsub_client_connected',
      'persist_pubsub_client_connections_established_total',
      'persist_pubsub_state_consensus_reads_total',
      'persist_pubsub_consensus_ops_total',
    ]) {
      expect(all).toContain(needed);
    }
    expect(all).toMatch(
      /histogram_quantile\(0\.99, sum by \(le, path\) \(rate\(persist_pubsub_e2e_latency_seconds_bucket/,
    );
  });
});
