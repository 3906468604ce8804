/**
 * `npm run bench -- scale [--quick] [--shards 10000] [--connections 1000]
 *   [--subscriptions-per-connection 100] [--rate 1.5] [--diff-bytes 560] [--measure-ms 20000]
 *   [--cpu-prof]`
 *
 * The broker at scale: 10k shards, 1k HTTP/2 connections (each its own session, from two
 * subscriber processes), 100k subscriptions (each shard followed by 10 connections), and every
 * shard pushed at the reference rate (1.5 diffs/s: 15k pushes/s, 150k deliveries/s; 560 B
 * diffs, the mean of 100 B–1 KiB) by one publisher process. The broker runs alone in its own
 * process (`broker-server.ts`); the clients are the lean ones of `broker-client.ts`.
 * Reports the broker's RSS (idle, subscribed, peak under load), its CPU (% of one core and
 * CPU-seconds per million deliveries), delivered ratio and delivery latency.
 * Results: `bench/results/scale.json` (`quick/` with `--quick`), and the report.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';
import {
  type Child,
  forkChild,
  type LatencySummary,
  loadAverage,
  newHistogram,
  sleep,
  summarize,
} from './e2e-child.js';
import { type BenchRun, writeResult } from './report.js';

export const scaleBench = {
  description:
    'the broker at 10k shards, 1k connections, 100k subscriptions at the reference rate: RSS and CPU',
  run,
};

interface BrokerStats {
  cpu: { user: number; system: number };
  rss: number;
  heapUsed: number;
  subscriptions: number;
  dropped: number;
}

export interface ScaleResult extends BenchRun {
  kind: 'scale';
  config: {
    shards: number;
    connections: number;
    subscriptions: number;
    ratePerShard: number;
    diffBytes: number;
    measureMs: number;
  };
  rssMiB: { idle: number; subscribed: number; peakUnderLoad: number; afterLoad: number };
  heapUsedMiB: { subscribed: number; afterLoad: number };
  pushesPerSecond: number;
  deliveredPerSecond: number;
  deliveredRatio: number;
  brokerCpuPercent: number;
  brokerCpuSecondsPerMillion: number;
  dropped: number;
  latency: LatencySummary;
  subscribeSeconds: number;
}

async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      shards: { type: 'string', default: '10000' },
      connections: { type: 'string', default: '1000' },
      'subscriptions-per-connection': { type: 'string', default: '100' },
      rate: { type: 'string', default: '1.5' },
      'diff-bytes': { type: 'string', default: '560' },
      'measure-ms': { type: 'string' },
      'cpu-prof': { type: 'boolean', default: false },
    },
  });
  const quick = values.quick;
  const shards = Number(values.shards);
  const connections = Number(values.connections);
  const perConnection = Number(values['subscriptions-per-connection']);
  const rate = Number(values.rate);
  const diffBytes = Number(values['diff-bytes']);
  const measureMs = Number(values['measure-ms'] ?? (quick ? 5000 : 20000));
  for (const [name, v] of Object.entries({ shards, connections, perConnection, diffBytes })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  }
  if (!(rate > 0) || !(measureMs >= 1000) || measureMs % 1000 !== 0) {
    throw new Error('--rate must be > 0 and --measure-ms a whole number of seconds');
  }
  if (diffBytes < 8) throw new Error('--diff-bytes must be ≥ 8');
  const cpuProf = values['cpu-prof'] ? '.tmp/cpu-prof' : undefined;
  const startedAt = new Date().toISOString();
  const loadBefore = loadAverage();
  // Whole pushes per second (see `fanout-nats.ts`: the publisher paces to a whole total).
  const pushesPerSecond = Math.max(1, Math.round(shards * rate));
  console.log(
    `${shards} shards, ${connections} HTTP/2 connections × ${perConnection} subscriptions, ${pushesPerSecond} pushes/s of ${diffBytes} B for ${measureMs} ms. Load average ${loadBefore}.\n`,
  );

  const broker = forkChild('./broker-server.js', [], { cpuProf });
  const workers: Child[] = [forkChild('./broker-client.js'), forkChild('./broker-client.js')];
  const pub = forkChild('./broker-client.js');
  try {
    const { port } = await broker.next<{ port: number }>('ready');
    await Promise.all([...workers, pub].map((c) => c.next('ready')));
    const stats = () => broker.request<BrokerStats>({ type: 'stats' }, 'stats');
    const idle = await stats();
    const ids = Array.from({ length: shards }, () => `s${randomUUID()}`);
    // Connection j follows `perConnection` consecutive shards from j × (shards / connections):
    // every shard gets connections × perConnection / shards subscribers.
    const stride = shards / connections;
    const conns = Array.from({ length: connections }, (_, j) =>
      Array.from({ length: perConnection }, (_, k) => ids[(Math.floor(j * stride) + k) % shards]!),
    );
    const t0 = Date.now();
    await Promise.all(
      workers.map((w, i) =>
        w.request(
          {
            type: 'subscribe',
            port,
            connections: conns.filter((_, j) => j % workers.length === i),
            connectionsPerSession: 1,
          },
          'subscribed',
          180_000,
        ),
      ),
    );
    const expectedSubs = connections * perConnection;
    const deadline = Date.now() + 120_000;
    while ((await stats()).subscriptions < expectedSubs) {
      if (Date.now() > deadline) throw new Error('not every subscription became active');
      await sleep(100);
    }
    const subscribeSeconds = (Date.now() - t0) / 1000;
    await sleep(500);
    const subscribed = await stats();
    // Warm-up: one push per shard (fills the resume rings), then the measured load.
    await Promise.all(workers.map((w) => w.request({ type: 'reset' }, 'reset')));
    await pub.request(
      {
        type: 'publish',
        port,
        shards: ids,
        pushesPerSecond: Math.min(pushesPerSecond, shards),
        durationMs: 1000,
        diffBytes,
      },
      'published',
      120_000,
    );
    // Until the warm-up's deliveries have all landed (the count stops moving; bounded).
    let last = -1;
    for (const end = Date.now() + 15_000; Date.now() < end; ) {
      let n = 0;
      for (const w of workers) {
        n += (await w.request<{ received: number }>({ type: 'report' }, 'report')).received;
      }
      if (n === last) break;
      last = n;
      await sleep(300);
    }
    await Promise.all(workers.map((w) => w.request({ type: 'reset' }, 'reset')));
    const before = await stats();
    let peakRss = before.rss;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await sleep(1000);
        if (sampling) peakRss = Math.max(peakRss, (await stats()).rss);
      }
    })();
    const published = await pub.request<{ sent: number }>(
      {
        type: 'publish',
        port,
        shards: ids,
        pushesPerSecond,
        durationMs: measureMs,
        diffBytes,
      },
      'published',
      measureMs + 120_000,
    );
    const expected = published.sent * ((connections * perConnection) / shards);
    const reports: { received: number; histogram: string }[] = [];
    const settle = Date.now() + 3000;
    for (;;) {
      reports.length = 0;
      for (const w of workers) {
        reports.push(
          await w.request<{ received: number; histogram: string }>({ type: 'report' }, 'report'),
        );
      }
      if (reports.reduce((a, r) => a + r.received, 0) >= expected || Date.now() > settle) break;
      await sleep(100);
    }
    sampling = false;
    await sampler;
    const after = await stats();
    peakRss = Math.max(peakRss, after.rss);
    const received = reports.reduce((a, r) => a + r.received, 0);
    const h = newHistogram();
    for (const r of reports) h.add(hdr.decodeFromCompressedBase64(r.histogram));
    const cpuS = (after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system) / 1e6;
    const mib = (b: number) => Math.round((b / 1024 / 1024) * 10) / 10;
    const result: ScaleResult = {
      kind: 'scale',
      startedAt,
      quick,
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadAverage(),
      host: undefined,
      config: {
        shards,
        connections,
        subscriptions: subscribed.subscriptions,
        ratePerShard: rate,
        diffBytes,
        measureMs,
      },
      rssMiB: {
        idle: mib(idle.rss),
        subscribed: mib(subscribed.rss),
        peakUnderLoad: mib(peakRss),
        afterLoad: mib(after.rss),
      },
      heapUsedMiB: { subscribed: mib(subscribed.heapUsed), afterLoad: mib(after.heapUsed) },
      pushesPerSecond,
      deliveredPerSecond: Math.round(received / (measureMs / 1000)),
      deliveredRatio: expected === 0 ? 0 : Math.round((received / expected) * 10_000) / 10_000,
      brokerCpuPercent: Math.round((cpuS / (measureMs / 1000)) * 1000) / 10,
      brokerCpuSecondsPerMillion:
        received === 0 ? 0 : Math.round((cpuS / (received / 1e6)) * 100) / 100,
      dropped: after.dropped - before.dropped,
      latency: summarize(h),
      subscribeSeconds: Math.round(subscribeSeconds * 10) / 10,
    };
    console.log(
      '| subscriptions | RSS idle MiB | RSS subscribed MiB | RSS peak under load MiB | pushes/s | delivered/s | delivered | broker CPU | CPU-s per 1M | p50 ms | p99 ms | max ms | drops |\n' +
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|\n' +
        `| ${result.config.subscriptions} | ${result.rssMiB.idle} | ${result.rssMiB.subscribed} | ${result.rssMiB.peakUnderLoad} | ${pushesPerSecond} | ${result.deliveredPerSecond} | ${(result.deliveredRatio * 100).toFixed(1)}% | ${result.brokerCpuPercent}% | ${result.brokerCpuSecondsPerMillion} | ${result.latency.p50Ms} | ${result.latency.p99Ms} | ${result.latency.maxMs} | ${result.dropped} |`,
    );
    const file = await writeResult(result);
    console.log(`\nload average after: ${result.loadAverageAfter}. Results: ${file}`);
  } finally {
    await pub.stop();
    await Promise.all(workers.map((w) => w.stop()));
    await broker.stop();
  }
}
