/**
 * Renders `REPORT.md` and its SVG charts from the JSON results of a folder (`e2e.json`,
 * `fanout.json`, `scale.json`, whichever exist), with the figures set against the targets of
 * the mission. A hand-written `notes.md` in the folder (analysis, profiles) is appended as is.
 */

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type BrokersResult, brokersTable } from './brokers.js';
import { costSpec, fanoutSpec, latencyCdfSpec, renderSvg } from './charts.js';
import type { E2ePhase, E2eResult } from './e2e.js';
import type { LatencySummary } from './e2e-child.js';
import type { FanoutResult } from './fanout-nats.js';
import { type BenchRun, readResult } from './report.js';
import type { ScaleResult } from './scale.js';

const TARGETS = {
  p50Ms: 1,
  p99Ms: 5,
  readsRatio: 0.01,
  cpuFactor: 50,
  natsRatio: 0.25,
};

const fmt = (x: number | null | undefined, digits = 2): string =>
  x === null || x === undefined || !Number.isFinite(x)
    ? '–'
    : x >= 100
      ? Math.round(x).toLocaleString('en-US')
      : String(Number(x.toFixed(digits)));

function runLine(r: BenchRun): string {
  const h = r.host;
  return (
    `Run ${r.startedAt}${r.quick ? ' (--quick)' : ''}; load average (1/5/15 min) ${r.loadAverageBefore} before, ${r.loadAverageAfter} after` +
    (h === undefined ? '' : `; ${h.cpus} × ${h.cpuModel}, ${h.memoryGiB} GiB, Node ${h.node}`) +
    '.'
  );
}

const lat = (s: LatencySummary) =>
  `${fmt(s.p50Ms)} | ${fmt(s.p90Ms)} | ${fmt(s.p99Ms)} | ${fmt(s.p999Ms)} | ${fmt(s.maxMs)}`;

function verdict(ok: boolean, detail: string): string {
  return `${ok ? '**met**' : '**missed**'}${detail === '' ? '' : ` (${detail})`}`;
}

function find(e2e: E2eResult, consensus: string, mode: string): E2ePhase | undefined {
  return e2e.phases.find((p) => p.consensus === consensus && p.mode === mode);
}

function targetRows(e2e: E2eResult | undefined, fanout: FanoutResult | undefined): string[] {
  const rows: string[] = [];
  for (const consensus of ['postgres', 'sqlite']) {
    const on = e2e && find(e2e, consensus, 'pubsub');
    const off = e2e && find(e2e, consensus, 'polling');
    if (on !== undefined) {
      for (const [what, s] of [
        ['commit (CAS done) → observed', on.commitToObserved],
        ['scheduled → observed (CO-corrected, CAS included)', on.scheduledToObserved],
      ] as const) {
        const ok50 = s.p50Ms <= TARGETS.p50Ms;
        const ok99 = s.p99Ms <= TARGETS.p99Ms;
        const by = [
          ok50 ? '' : `p50 ${fmt(s.p50Ms / TARGETS.p50Ms, 1)}× the target`,
          ok99 ? '' : `p99 ${fmt(s.p99Ms / TARGETS.p99Ms, 1)}× the target`,
        ]
          .filter((x) => x !== '')
          .join(', ');
        rows.push(
          `| e2e p50 ≤ ${TARGETS.p50Ms} ms, p99 ≤ ${TARGETS.p99Ms} ms (${consensus}, ${what}) | p50 ${fmt(s.p50Ms)} ms, p99 ${fmt(s.p99Ms)} ms | ${verdict(ok50 && ok99, by)} |`,
        );
      }
    }
    if (on !== undefined && off !== undefined) {
      const ratio =
        off.readsPerSecond.readers === 0
          ? NaN
          : on.readsPerSecond.readers / off.readsPerSecond.readers;
      rows.push(
        `| Consensus reads with pubsub ≤ 1 % of polling (${consensus}) | ${fmt(on.readsPerSecond.readers)} vs ${fmt(off.readsPerSecond.readers)} reads/s = ${fmt(ratio * 100, 2)} % | ${verdict(ratio <= TARGETS.readsRatio, ratio <= TARGETS.readsRatio ? '' : `${fmt(ratio / TARGETS.readsRatio, 1)}× the bound`)} |`,
      );
      const f =
        on.cpuUsPerObserved.readPath === 0
          ? NaN
          : off.cpuUsPerObserved.readPath / on.cpuUsPerObserved.readPath;
      const all =
        on.cpuUsPerObserved.allProcesses === 0
          ? NaN
          : off.cpuUsPerObserved.allProcesses / on.cpuUsPerObserved.allProcesses;
      rows.push(
        `| ≥ ${TARGETS.cpuFactor}× less CPU per observed update than polling (${consensus}, read path: readers + broker${consensus === 'postgres' ? " + readers' Postgres backends" : ''}) | ${fmt(on.cpuUsPerObserved.readPath)} vs ${fmt(off.cpuUsPerObserved.readPath)} µs = ${fmt(f, 1)}× less (all processes incl. writers: ${fmt(all, 2)}×) | ${verdict(f >= TARGETS.cpuFactor, f >= TARGETS.cpuFactor ? '' : `${fmt(TARGETS.cpuFactor / f, 1)}× short`)} |`,
      );
    }
  }
  const r10 = fanout?.ratios.find((r) => r.fanout === 10);
  if (fanout !== undefined && r10 !== undefined && r10.ratio !== null) {
    const ours = fanout.best.find((b) => b.fanout === 10 && b.system === 'ours');
    const nats = fanout.best.find((b) => b.fanout === 10 && b.system === 'nats');
    rows.push(
      `| broker ≥ ${TARGETS.natsRatio}× nats-server's delivered msgs/s at fan-out 10 | ${fmt(ours?.deliveredPerSecond)} vs ${fmt(nats?.deliveredPerSecond)} msgs/s = ${fmt(r10.ratio)}× | ${verdict(r10.ratio >= TARGETS.natsRatio, r10.ratio >= TARGETS.natsRatio ? '' : `${fmt(TARGETS.natsRatio / r10.ratio, 1)}× short`)} |`,
    );
  }
  return rows;
}

function e2eSection(e2e: E2eResult, variant?: string): string[] {
  const c = e2e.config;
  const svg = (name: string) => (variant === undefined ? `${name}.svg` : `${name}-${variant}.svg`);
  const out = [
    variant === undefined
      ? '## End to end (`npm run bench -- e2e`)'
      : `## End to end, variant \`${variant}\` (\`npm run bench -- e2e --variant ${variant} …\`)`,
    '',
    runLine(e2e),
    '',
    `${c.writers} writer and ${c.readers} reader processes (the SDK, \`createPersistClient\`), ${c.shards} shards × ${c.ratePerShard} commits/s (${fmt(c.shards * c.ratePerShard)} commits/s), diffs ${c.diffBytes[0]}–${c.diffBytes[1]} B; every reader follows every shard (${c.readerApi === 'callback' ? '`onVersion`' : 'a `waitForSeqno` loop'}), so each commit is observed ${c.readers} times. ` +
      `Warm-up ${c.warmupMs / 1000} s, then a ${c.measureMs / 1000} s window. pubsub: through the broker in its own process; polling: no pubsub, the reference poll schedule (1.2 s, then 100 ms doubling). Postgres as configured (fsync on); SQLite with \`synchronous = ${c.sqliteSynchronous ?? 'full'}\` (WAL). ` +
      'Latency of every (reader, commit) pair of the window, HDR histogram: *scheduled → observed* counts from when the commit was due (so a writer running late is charged for it: coordinated omission), and includes the compare-and-set; *commit → observed* counts from the end of the compare-and-set.',
    '',
    '| Consensus | mode | observed / expected | scheduled→observed p50 | p90 | p99 | p99.9 | max ms | commit→observed p50 | p90 | p99 | p99.9 | max ms | writer update p50 / p99 ms |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const p of e2e.phases) {
    out.push(
      `| ${p.consensus} | ${p.mode} | ${p.observations} / ${p.expectedObservations} | ${lat(p.scheduledToObserved)} | ${lat(p.commitToObserved)} | ${fmt(p.writerUpdate.p50Ms)} / ${fmt(p.writerUpdate.p99Ms)} |`,
    );
  }
  out.push(
    '',
    'Cost over the window. CPU in µs per observed update (a reader applying one commit); Postgres: utime + stime of the backends serving the readers / the writers (by `application_name`) and of every postgres process (server-wide, other clients included).',
    '',
    '| Consensus | mode | commits/s | observed/s | reader Consensus reads/s | reader polls/s | readers | broker | Postgres (readers) | **read path** | writers | Postgres (writers) | Postgres (all) | all processes | push drops | catch-up fetches | errors | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const p of e2e.phases) {
    const u = p.cpuUsPerObserved;
    out.push(
      `| ${p.consensus} | ${p.mode} | ${fmt(p.commitsPerSecond)} | ${fmt(p.observedPerSecond)} | ${fmt(p.readsPerSecond.readers)} | ${fmt(p.pollsPerSecond)} | ${fmt(u.readers)} | ${fmt(u.broker)} | ${fmt(u.postgresReaders)} | **${fmt(u.readPath)}** | ${fmt(u.writers)} | ${fmt(u.postgresWriters)} | ${fmt(u.postgresAll)} | ${fmt(u.allProcesses)} | ${p.pushDrops} | ${p.catchUpFetches} | ${p.errors} | ${p.loadAverage} |`,
    );
  }
  if (e2e.skipped.length > 0) out.push('', `Skipped: ${e2e.skipped.join('; ')}.`);
  out.push(
    '',
    `![Latency CDF, pubsub vs polling](${svg('latency-cdf')})`,
    '',
    `![Reads and CPU per observed update](${svg('cost')})`,
    '',
  );
  return out;
}

function fanoutSection(f: FanoutResult): string[] {
  const c = f.config;
  const out = [
    '## Fan-out against nats-server (`npm run bench -- fanout`)',
    '',
    runLine(f),
    '',
    `${c.messageBytes} B messages round-robin over ${c.shards} shards (subjects), each followed by exactly F subscribers, every subscriber its own TCP connection; one publisher process, one subscriber process, the server in its own process; lean protocol clients on both sides (raw HTTP/2 + gRPC framing; raw NATS text protocol). ` +
      `The offered rate steps up ×√2 (${c.stepMs / 1000} s steps) until a step fails: ≥ ${c.minDeliveredRatio * 100} % delivered and p99 (publisher write → subscriber read) < ${c.p99BoundMs} ms. nats-server ${c.natsServer}.`,
    '',
    '| fan-out | ours: msgs/s at the bound | nats-server: msgs/s at the bound | ours / NATS |',
    '|---|---|---|---|',
  ];
  for (const r of f.ratios) {
    const ours = f.best.find((b) => b.system === 'ours' && b.fanout === r.fanout);
    const nats = f.best.find((b) => b.system === 'nats' && b.fanout === r.fanout);
    const cell = (b: typeof ours) =>
      b === undefined
        ? '–'
        : `${fmt(b.deliveredPerSecond)}${b.capped ? ' (ladder top)' : ''} (p99 ${fmt(b.p99Ms)} ms)`;
    out.push(`| ${r.fanout} | ${cell(ours)} | ${cell(nats)} | ${fmt(r.ratio)} |`);
  }
  out.push(
    '',
    '![Throughput vs fan-out against nats-server](fanout.svg)',
    '',
    '<details><summary>Every step</summary>',
    '',
    '| system | fan-out | offered/s | delivered/s | delivered | p50 ms | p99 ms | p99.9 ms | max ms | server CPU-s per 1M | server CPU | our broker loop stall max ms | publisher / subscriber CPU | bound |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const s of f.steps) {
    out.push(
      `| ${s.system} | ${s.fanout} | ${fmt(s.offeredPerSecond)} | ${fmt(s.deliveredPerSecond)} | ${fmt(s.deliveredRatio * 100, 1)} % | ${fmt(s.p50Ms)} | ${fmt(s.p99Ms)} | ${fmt(s.p999Ms)} | ${fmt(s.maxMs)} | ${fmt(s.serverCpuSecondsPerMillion)} | ${s.serverCpuPercent} % | ${fmt(s.serverLoopStallMaxMs)} | ${s.publisherCpuPercent === undefined ? '–' : `${s.publisherCpuPercent} % / ${s.subscriberCpuPercent ?? '–'} %`} | ${s.pass ? 'pass' : 'fail'} |`,
    );
  }
  out.push('', '</details>', '');
  return out;
}

function scaleSection(s: ScaleResult): string[] {
  const c = s.config;
  return [
    '## Scale (`npm run bench -- scale`)',
    '',
    runLine(s),
    '',
    `The broker alone in its process; ${fmt(c.shards)} shards, ${fmt(c.connections)} HTTP/2 connections (each its own session) holding ${fmt(c.subscriptions)} subscriptions, every shard pushed at ${c.ratePerShard}/s (${fmt(s.pushesPerSecond)} pushes/s of ${c.diffBytes} B) for ${c.measureMs / 1000} s. Subscribed in ${s.subscribeSeconds} s.`,
    '',
    '| RSS idle | RSS with subscriptions | RSS peak under load | heap used (subscribed / after load) | delivered/s | delivered | broker CPU (one core = 100 %) | CPU-s per 1M deliveries | latency p50 / p99 / max ms | drops |',
    '|---|---|---|---|---|---|---|---|---|---|',
    `| ${s.rssMiB.idle} MiB | ${s.rssMiB.subscribed} MiB | ${s.rssMiB.peakUnderLoad} MiB | ${s.heapUsedMiB.subscribed} / ${s.heapUsedMiB.afterLoad} MiB | ${fmt(s.deliveredPerSecond)} | ${fmt(s.deliveredRatio * 100, 1)} % | ${s.brokerCpuPercent} % | ${fmt(s.brokerCpuSecondsPerMillion)} | ${fmt(s.latency.p50Ms)} / ${fmt(s.latency.p99Ms)} / ${fmt(s.latency.maxMs)} | ${s.dropped} |`,
    '',
  ];
}

export async function writeReport(dir: string): Promise<void> {
  const e2e = readResult<E2eResult>(dir, 'e2e');
  const fanout = readResult<FanoutResult>(dir, 'fanout');
  const scale = readResult<ScaleResult>(dir, 'scale');
  const out = [
    '# Benchmark report',
    '',
    'Generated by `npm run bench` (`bench/report-markdown.ts`) from the JSON files in this folder; every figure below is measured, none is typed in. The machine is shared: read each section with its load average.',
    '',
    '## Against the targets',
    '',
    '| target | measured | verdict |',
    '|---|---|---|',
    ...targetRows(e2e, fanout),
    '',
  ];
  if (e2e !== undefined && e2e.phases.length > 0) {
    writeFileSync(join(dir, 'latency-cdf.svg'), await renderSvg(latencyCdfSpec(e2e)));
    writeFileSync(join(dir, 'cost.svg'), await renderSvg(costSpec(e2e)));
    out.push(...e2eSection(e2e));
  }
  for (const name of readdirSync(dir).sort()) {
    const m = /^e2e-([a-z0-9-]+)\.json$/.exec(name);
    const v = m === null ? undefined : readResult<E2eResult>(dir, `e2e-${m[1]}`);
    if (m === null || v === undefined || v.phases.length === 0) continue;
    writeFileSync(join(dir, `latency-cdf-${m[1]}.svg`), await renderSvg(latencyCdfSpec(v)));
    writeFileSync(join(dir, `cost-${m[1]}.svg`), await renderSvg(costSpec(v)));
    out.push(...e2eSection(v, m[1]));
  }
  if (fanout !== undefined && fanout.best.length > 0) {
    writeFileSync(join(dir, 'fanout.svg'), await renderSvg(fanoutSpec(fanout)));
    out.push(...fanoutSection(fanout));
  }
  if (scale !== undefined) out.push(...scaleSection(scale));
  const brokers = readResult<BrokersResult>(dir, 'brokers');
  if (brokers !== undefined && brokers.runs.length > 0) {
    out.push(
      '## Several brokers under kill -9 (`bench brokers`)',
      '',
      `${brokers.startedAt}, load ${brokers.loadAverageBefore} → ${brokers.loadAverageAfter}; phases of ${brokers.settings.phaseMs} ms, ${brokers.settings.shards} shards, a commit every ${brokers.settings.intervalMs} ms. Latency is commit → observed by the reader over the kills (target max ≤ 20 ms).`,
      '',
      ...brokersTable(brokers.runs),
      '',
    );
  }
  const notes = join(dir, 'notes.md');
  if (existsSync(notes)) out.push(readFileSync(notes, 'utf8').trimEnd(), '');
  writeFileSync(join(dir, 'REPORT.md'), `${out.join('\n')}\n`);
}
