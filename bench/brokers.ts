/**
 * `npm run bench -- brokers [--rounds 1] [--phase-ms 1500] [--shards 4] [--interval-ms 20]
 *   [--quick]`
 *
 * Issue 16's broker-kill scenario (`brokers-scenario.ts`, the same one the fault test
 * test/fault/brokers.test.ts asserts on), side by side: one broker (today: `kill -9` it,
 * restart it, twice) against two replicated brokers (`kill -9` one, restart it, then the other),
 * real CLI broker processes, an SDK writer and reader in this process over a memory Consensus,
 * default flags (a first poll 1.2 s after the last progress, 5 s reconnect backoff). For each:
 * commit → observed latency (p50, p99, max over the kills; target max ≤ 20 ms), the reader's
 * fallback polls, catch-up fetches and versions read from Consensus, duplicates dropped, and
 * CPU per commit of this process (writer + reader SDK) and of the broker processes (/proc), so
 * the extra CPU of the second copy shows. `--rounds N` alternates the two N times (A/B back to
 * back in one window). Prints a Markdown table; writes `brokers.json` with bench/report.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { type BrokerKillsResult, type BrokerProcess, runBrokerKills } from './brokers-scenario.js';
import { here } from './e2e-child.js';
import { freePort } from './nats-server.js';
import { type BenchRun, writeResult } from './report.js';

export const brokersBench = {
  description:
    'one broker vs two replicated brokers under kill -9 and restart: commit->observed latency, fallback polls, catch-up fetches, CPU of the second copy',
  run,
};

export interface BrokersResult extends BenchRun {
  kind: 'brokers';
  settings: { rounds: number; phaseMs: number; shards: number; intervalMs: number };
  runs: (BrokerKillsResult & { loadAverage: string })[];
}

const CLI = here('../src/cli/main.js');

/** The CLI broker on `port`, once it logs that it listens. */
async function startBroker(port: number): Promise<BrokerProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    [CLI, 'broker', '--listen', `127.0.0.1:${port}`, '--admin-listen', '127.0.0.1:0'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error(`broker on ${port} did not start`)), 20_000);
    lines.on('line', (l) => {
      if (!l.includes('broker listening')) return;
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => reject(new Error(`broker on ${port} exited (${code})`)));
  });
  child.stdout?.resume();
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return { pid: child.pid as number, kill9: () => end('SIGKILL'), stop: () => end('SIGTERM') };
}

const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

/** The side-by-side table (also in the report). */
export function brokersTable(runs: BrokersResult['runs']): string[] {
  const f = (x: number) => x.toFixed(1);
  const us = (ms: number, commits: number) => (commits === 0 ? '-' : f((ms * 1000) / commits));
  return [
    '| brokers | commits | latency p50 / p99 / max (ms) | fallback polls | catch-up fetches | versions from Consensus | duplicates | client CPU µs/commit | broker CPU µs/commit | load |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...runs.map(
      (r) =>
        `| ${r.brokers === 1 ? 'one' : `${r.brokers} ${r.mode}`} | ${r.commits} | ${f(r.latencyMs.p50)} / ${f(r.latencyMs.p99)} / ${f(r.latencyMs.max)} | ${r.polls} | ${r.catchUpFetches} | ${r.byConsensus} | ${r.duplicates} | ${us(r.cpuMs.client, r.commits)} | ${us(r.cpuMs.brokers, r.commits)} | ${r.loadAverage} |`,
    ),
  ];
}

async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: 'string', default: '1' },
      'phase-ms': { type: 'string' },
      shards: { type: 'string', default: '4' },
      'interval-ms': { type: 'string', default: '20' },
      quick: { type: 'boolean', default: false },
    },
  });
  const settings = {
    rounds: Number(values.rounds),
    phaseMs: Number(values['phase-ms'] ?? (values.quick ? 800 : 1500)),
    shards: Number(values.shards),
    intervalMs: Number(values['interval-ms']),
  };
  for (const [k, v] of Object.entries(settings)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be an integer >= 1`);
  }
  const startedAt = new Date().toISOString();
  const loadAverageBefore = load();
  const runs: BrokersResult['runs'] = [];
  for (let round = 0; round < settings.rounds; round++) {
    for (const brokers of [1, 2]) {
      const ports = [await freePort(), await freePort()];
      const r = await runBrokerKills({
        brokers,
        mode: 'replicated',
        ports,
        startBroker,
        shards: settings.shards,
        commitIntervalMs: settings.intervalMs,
        phaseMs: settings.phaseMs,
      });
      runs.push({ ...r, loadAverage: load() });
      console.log(brokersTable(runs.slice(-1)).slice(2).join('\n'));
    }
  }
  console.log(`\n${brokersTable(runs).join('\n')}\n`);
  console.log('Worst commit → observed by phase (ms):');
  for (const r of runs) {
    const phases = Object.entries(r.latencyMs.maxByPhase)
      .map(([p, ms]) => `${p} ${ms.toFixed(1)}`)
      .join('; ');
    console.log(`- ${r.brokers === 1 ? 'one' : `${r.brokers} ${r.mode}`}: ${phases}`);
  }
  console.log('');
  const result: BrokersResult = {
    kind: 'brokers',
    startedAt,
    quick: values.quick,
    loadAverageBefore,
    loadAverageAfter: load(),
    host: undefined,
    settings,
    runs,
  };
  const file = await writeResult(result);
  console.log(`wrote ${file}`);
}
