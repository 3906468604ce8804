/**
 * Renders `REPORT.md` and its SVG charts from the JSON results of a folder (`e2e.json`,
 * `fanout.json`, `scale.json`, `floor*.json`, whichever exist), with the figures set against the
 * targets of the mission and of issues 13 and 14 (per-event CPU of readers, writers and broker,
 * beside the platform's floor from `bench floor`; fan-out against nats-server). A hand-written `notes.md` in the folder (analysis, profiles) is appended as is.
 */

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type BrokersResult, brokersTable } from './brokers.js';
import { costSpec, fanoutSpec, latencyCdfSpec, renderSvg } from './charts.js';
import type { E2ePhase, E2eResult } from './e2e.js';
import type { LatencySummary } from './e2e-child.js';
import type { FanoutResult, FanoutStep } from './fanout-nats.js';
import type { FloorResult } from './floor.js';
import { FLOOR_TABLE_HEADER, type FloorRole, floorTableLine } from './floor-shape.js';
import { type BenchRun, readResult } from './report.js';
import type { ScaleResult } from './scale.js';

const TARGETS = {
  p50Ms: 1,
  p99Ms: 5,
  readsRatio: 0.01,
  cpuFactor: 50,
  /** Issue 14 item 3: ours / nats-server delivered msgs/s within the bound, at each fan-out. */
  natsRatio: 0.5,
  /** Issue 13 items 1–2 and issue 14 item 1: CPU µs per event. */
  readerUs: 20,
  writerUs: { sqlite: 80, postgres: 100 } as Record<string, number>,
  brokerUs: 8,
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

/** The floor of `role` in a floor result (`bench floor`): the last variant's row, µs per event. */
function floorUs(f: FloorResult | undefined, role: FloorRole): number | undefined {
  return f?.rows.filter((r) => r.role === role).at(-1)?.cpuUsPerEvent;
}

/** ` (floor: …)`: what the platform alone costs per event, from `bench floor`, if it ran. */
function floorNote(
  floors: readonly [FloorResult | undefined, FloorResult | undefined],
  role: FloorRole,
  what: string,
): string {
  const [even, e2eLayout] = floors.map((f) => floorUs(f, role));
  if (even === undefined && e2eLayout === undefined) return '';
  const parts = [
    even === undefined ? '' : `${fmt(even, 1)} µs at one event per wake-up`,
    e2eLayout === undefined ? '' : `${fmt(e2eLayout, 1)} µs at e2e's writer layout`,
  ].filter((x) => x !== '');
  return ` (floor, ${what}: ${parts.join(', ')})`;
}

/** A CPU-per-event row: `measured` against `target`, met when at most the target. */
function cpuRow(target: string, measured: number, limit: number, note: string): string {
  const ok = measured <= limit;
  return `| ${target} | ${fmt(measured, 1)} µs${note} | ${verdict(ok, ok ? '' : `${fmt(measured / limit, 1)}× the target`)} |`;
}

/**
 * Issue 14 item 3 at each fan-out: delivered msgs/s within the bound against nats-server's, and
 * CPU-s per million deliveries against nats-server's at each offered rate both passed (the
 * first try of each system at that rate).
 */
export function fanoutTargetRows(f: FanoutResult): string[] {
  const rows: string[] = [];
  const passed = (s: FanoutStep) =>
    s.deliveredRatio >= f.config.minDeliveredRatio && s.p99Ms < f.config.p99BoundMs;
  for (const r of f.ratios) {
    const ours = f.best.find((b) => b.fanout === r.fanout && b.system === 'ours');
    const nats = f.best.find((b) => b.fanout === r.fanout && b.system === 'nats');
    if (r.ratio !== null) {
      const ok = r.ratio >= TARGETS.natsRatio;
      rows.push(
        `| broker ≥ ${TARGETS.natsRatio}× nats-server's delivered msgs/s within the bound (fan-out ${r.fanout}) | ${fmt(ours?.deliveredPerSecond)} vs ${fmt(nats?.deliveredPerSecond)} msgs/s = ${fmt(r.ratio)}× | ${verdict(ok, ok ? '' : `${fmt(TARGETS.natsRatio / r.ratio, 1)}× short`)} |`,
      );
    }
    const first = (system: FanoutStep['system'], rate: number) =>
      f.steps.find(
        (s) => s.system === system && s.fanout === r.fanout && s.offeredPerSecond === rate,
      );
    const pairs = [
      ...new Set(f.steps.filter((s) => s.fanout === r.fanout).map((s) => s.offeredPerSecond)),
    ]
      .sort((a, b) => a - b)
      .flatMap((rate) => {
        const o = first('ours', rate);
        const n = first('nats', rate);
        return o !== undefined && n !== undefined && passed(o) && passed(n) ? [{ rate, o, n }] : [];
      });
    if (pairs.length === 0) continue;
    const above = pairs.filter(
      (p) => p.o.serverCpuSecondsPerMillion > p.n.serverCpuSecondsPerMillion,
    );
    const worst = [...pairs].sort(
      (a, b) =>
        b.o.serverCpuSecondsPerMillion / b.n.serverCpuSecondsPerMillion -
        a.o.serverCpuSecondsPerMillion / a.n.serverCpuSecondsPerMillion,
    )[0] as (typeof pairs)[number];
    rows.push(
      `| broker CPU-s per million deliveries ≤ nats-server's at the same offered rate (fan-out ${r.fanout}) | ours ≤ nats-server at ${pairs.length - above.length} of ${pairs.length} rates both passed; highest ratio ${fmt(worst.o.serverCpuSecondsPerMillion)} vs ${fmt(worst.n.serverCpuSecondsPerMillion)} at ${fmt(worst.rate)}/s | ${verdict(above.length === 0, above.length === 0 ? '' : `above at ${above.map((p) => fmt(p.rate)).join(', ')}/s`)} |`,
    );
  }
  return rows;
}

export function targetRows(
  e2e: E2eResult | undefined,
  fanout: FanoutResult | undefined,
  floors: readonly [FloorResult | undefined, FloorResult | undefined] = [undefined, undefined],
): string[] {
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
    if (on !== undefined) {
      const commits = on.commitsPerSecond * on.measureSeconds;
      const writerUs = commits === 0 ? NaN : (on.cpuSeconds.writers * 1e6) / commits;
      const sqlite = consensus === 'sqlite';
      rows.push(
        cpuRow(
          `readers ≤ ${TARGETS.readerUs} µs CPU per observed update with pubsub (${consensus})`,
          on.cpuUsPerObserved.readers,
          TARGETS.readerUs,
          floorNote(floors, 'reader', 'a bare `net` reader'),
        ),
        cpuRow(
          `writers ≤ ${TARGETS.writerUs[consensus]} µs CPU per commit with pubsub (${consensus}, the writer processes' whole CPU)`,
          writerUs,
          TARGETS.writerUs[consensus] ?? NaN,
          sqlite ? floorNote(floors, 'writer', 'timer wake-up + SQLite CAS + 500 B write') : '',
        ),
      );
      if (on.cpuUsPerObserved.broker !== null) {
        rows.push(
          cpuRow(
            `broker ≤ ${TARGETS.brokerUs} µs CPU per delivery (${consensus}; one delivery per observed update)`,
            on.cpuUsPerObserved.broker,
            TARGETS.brokerUs,
            floorNote(floors, 'relay', 'a bare `net` relay'),
          ),
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
  if (fanout !== undefined) rows.push(...fanoutTargetRows(fanout));
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
      `The offered rate steps up ×√2 (${c.stepMs / 1000} s steps) until a step fails: ≥ ${c.minDeliveredRatio * 100} % delivered and p99 (publisher write → subscriber read) < ${c.p99BoundMs} ms. nats-server ${c.natsServer}. ` +
      `Clients at ${c.clientSched === 'batch' ? 'SCHED_BATCH (a woken client does not preempt the server)' : 'the default scheduling policy'}; ${c.stallMonitor === false ? 'both servers bare (our broker without its event-loop monitors, so no loop-stall figure)' : "our broker with its 1 ms event-loop monitors (their CPU, ~40 ms a second, is in our broker's figure)"}.`,
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

export function floorSection(f: FloorResult, variant: string): string[] {
  const c = f.config;
  return [
    `## Floors${variant === '' ? '' : `, variant \`${variant}\``} (\`npm run bench -- floor\`)`,
    '',
    runLine(f),
    '',
    `What the platform alone costs per event at the reference load's shape, each figure µs of CPU (utime + stime, all threads, \`/proc\`) per event: ${c.writers} writer processes over ${fmt(c.shards)} shards × ${c.ratePerShard}/s (${c.layout === 'e2e' ? "e2e's layout: each writer a consecutive slice of the shards" : 'interleaved: each writer evenly spread'}, ${c.perWakeup} event${c.perWakeup === 1 ? '' : 's'} per timer wake-up), writing ${c.frameBytes} B frames to a bare \`node:net\` relay that writes each to ${c.readers} bare \`node:net\` readers. Warm-up ${c.warmupMs / 1000} s, then ${c.measureMs / 1000} s per variant. The targets are the issues' per-update figures.`,
    '',
    FLOOR_TABLE_HEADER,
    ...f.rows.map(floorTableLine),
    '',
  ];
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
  const floors = readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const m = /^floor(-[a-z0-9-]+)?\.json$/.exec(name);
      const f = m === null ? undefined : readResult<FloorResult>(dir, name.slice(0, -5));
      return f === undefined || f.rows.length === 0 ? [] : [{ variant: m?.[1]?.slice(1) ?? '', f }];
    });
  const floorOf = (variant: string) => floors.find((x) => x.variant === variant)?.f;
  const out = [
    '# Benchmark report',
    '',
    'Generated by `npm run bench` (`bench/report-markdown.ts`) from the JSON files in this folder; every figure below is measured, none is typed in. The machine is shared: read each section with its load average.',
    '',
    '## Against the targets',
    '',
    '| target | measured | verdict |',
    '|---|---|---|',
    ...targetRows(e2e, fanout, [floorOf(''), floorOf('layout-e2e')]),
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
  for (const { variant, f } of floors) out.push(...floorSection(f, variant));
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
