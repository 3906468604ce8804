/**
 * The report's charts: Vega-Lite specs compiled to Vega and rendered to SVG headlessly
 * (`vega.View(...).toSVG()`, no canvas needed).
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { E2eResult } from './e2e.js';
import type { FanoutResult } from './fanout-nats.js';

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  // Vega-Lite's warnings (e.g. on unioned sort properties) are not the report's business.
  const quiet = vega.logger(vega.None);
  const view = new vega.View(vega.parse(compile(spec, { logger: quiet }).spec), {
    renderer: 'none',
    logger: quiet,
  });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const FONT = { font: 'Helvetica, Arial, sans-serif' };

/**
 * Commit → observe latency CDFs, pubsub vs polling, one line per (Consensus, mode), one panel
 * per way of measuring (from the schedule; from the end of the compare-and-set).
 */
export function latencyCdfSpec(e2e: E2eResult): TopLevelSpec {
  const values: Record<string, unknown>[] = [];
  for (const p of e2e.phases) {
    const series = `${p.mode} (${p.consensus})`;
    for (const [measure, points] of [
      ['scheduled → observed', p.cdf.scheduled],
      ['commit (CAS done) → observed', p.cdf.commit],
    ] as const) {
      // From the first percentile: the minimum says nothing and stretches the log axis.
      for (const pt of points)
        if (pt.p >= 0.01) values.push({ series, measure, ms: pt.ms, p: pt.p });
    }
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `End-to-end latency CDF: pubsub vs polling (${e2e.config.shards} shards × ${e2e.config.ratePerShard}/s, ${e2e.config.readers} readers)`,
      ...FONT,
    },
    config: { font: FONT.font, view: { stroke: '#ddd' } },
    data: { values },
    facet: { column: { field: 'measure', type: 'nominal', title: null } },
    spec: {
      width: 360,
      height: 260,
      mark: { type: 'line', point: { size: 18 }, interpolate: 'step-after' },
      encoding: {
        x: {
          field: 'ms',
          type: 'quantitative',
          scale: { type: 'log' },
          title: 'latency (ms, log scale)',
        },
        y: {
          field: 'p',
          type: 'quantitative',
          title: 'fraction of (reader, commit) pairs observed',
          axis: { format: '%' },
        },
        color: {
          field: 'series',
          type: 'nominal',
          title: null,
          scale: { scheme: 'category10' },
        },
        strokeDash: {
          condition: { test: "indexof(datum.series, 'polling') >= 0", value: [5, 3] },
          value: [1, 0],
        },
      },
    },
  } as TopLevelSpec;
}

/** Delivered msgs/s at the latency bound per fan-out, ours vs nats-server. */
export function fanoutSpec(f: FanoutResult): TopLevelSpec {
  const values = f.best.map((b) => ({
    fanout: `fan-out ${b.fanout}`,
    order: b.fanout,
    system: b.system === 'ours' ? 'persist-pubsub broker' : `nats-server ${f.config.natsServer}`,
    rate: b.deliveredPerSecond,
    label: `${Math.round(b.deliveredPerSecond / 1000)}k${b.capped ? '+' : ''}`,
  }));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `Delivered msgs/s at p99 < ${f.config.p99BoundMs} ms (${f.config.messageBytes} B, ${f.config.shards} shards): ours vs nats-server`,
      ...FONT,
    },
    config: { font: FONT.font, view: { stroke: null } },
    width: 460,
    height: 280,
    data: { values },
    encoding: {
      x: {
        field: 'fanout',
        type: 'ordinal',
        sort: { field: 'order' },
        title: null,
        axis: { labelAngle: 0 },
      },
      xOffset: { field: 'system' },
      y: { field: 'rate', type: 'quantitative', title: 'delivered msgs/s at the bound' },
      color: {
        field: 'system',
        type: 'nominal',
        title: null,
        scale: { scheme: 'tableau10' },
        legend: { labelLimit: 400, orient: 'top' },
      },
    },
    layer: [
      { mark: 'bar' },
      {
        mark: { type: 'text', dy: -6, fontSize: 11 },
        encoding: { text: { field: 'label' } },
      },
    ],
  } as TopLevelSpec;
}

/** Consensus reads/s and CPU per observed update, pubsub vs polling. */
export function costSpec(e2e: E2eResult): TopLevelSpec {
  const values: Record<string, unknown>[] = [];
  for (const p of e2e.phases) {
    const series = `${p.mode} (${p.consensus})`;
    values.push({
      series,
      consensus: p.consensus,
      mode: p.mode,
      metric: 'reader Consensus reads/s',
      value: p.readsPerSecond.readers,
    });
    values.push({
      series,
      consensus: p.consensus,
      mode: p.mode,
      metric: 'read-path CPU µs per observed update',
      value: p.cpuUsPerObserved.readPath,
    });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'What observing a commit costs: pubsub vs polling', ...FONT },
    config: { font: FONT.font, view: { stroke: null } },
    data: { values },
    facet: { column: { field: 'metric', type: 'nominal', title: null } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 260,
      height: 220,
      encoding: {
        x: { field: 'consensus', type: 'nominal', title: null, axis: { labelAngle: 0 } },
        xOffset: { field: 'mode' },
        y: { field: 'value', type: 'quantitative', title: null },
        color: { field: 'mode', type: 'nominal', title: null, scale: { scheme: 'set1' } },
      },
      layer: [
        { mark: 'bar' },
        {
          mark: { type: 'text', dy: -6, fontSize: 10 },
          encoding: { text: { field: 'value', type: 'quantitative', format: '.3~s' } },
        },
      ],
    },
  } as TopLevelSpec;
}
