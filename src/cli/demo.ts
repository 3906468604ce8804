/**
 * `persist-pubsub demo`: the main job a newcomer runs first (`npm start`), on the embedded
 * default with nothing to set up.
 *
 * It starts the broker as its own process (the real `persist-pubsub broker` command on free
 * loopback ports), two writer and two reader processes (`demo-worker.js`) over one shared
 * Consensus (a throwaway SQLite file unless `--consensus` names another), all using the SDK.
 * Writers commit to every shard at `--rate` per shard; readers follow every shard and measure
 * commit → applied latency per commit. A live table shows each second. At `--pubsub-off-at`
 * it writes `persist_pubsub_client_enabled: false` to the flags file every client watches, and
 * back after `--pubsub-off-for`: latency rises to polling levels and recovers.
 * `--pubsub nats://HOST:PORT` puts every client on NATS directly (no broker process);
 * `--pubsub bridged:nats://HOST:PORT` starts two brokers with `--bridge`, writers on one and
 * readers on the other, so every diff crosses NATS. Broker drops are summed over every broker.
 *
 * At the end writers stop, the heads are read from Consensus, readers must reach them, and
 * every reader's state must equal the state folded from Consensus. Exit 0 only if they do, no
 * process failed and nothing reported an error; 1 otherwise; 130 when interrupted. Every child
 * is killed on every exit path, and the temporary directory is removed.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { createPersistClient } from '../client/index.js';
import { raceSignal, sleep } from '../util/index.js';
import {
  type BrokerChild,
  checkBuilt,
  killAllChildrenNow,
  startBrokerChild,
  startWorkerChild,
  stopAllChildren,
  stopChild,
  type WorkerChild,
} from './demo-children.js';
import { demoModel, wallMs } from './demo-model.js';
import {
  DEMO_DEFAULTS,
  type DemoOptions,
  parseDemoOptions,
  type RawDemoOptions,
} from './demo-options.js';
import type { DemoCounters, DemoSample, DemoWorkerConfig, WorkerMessage } from './demo-protocol.js';
import {
  formatPhase,
  formatRow,
  percentile,
  ROW_HEADER,
  type Row,
  SUMMARY_HEADER,
  type Switches,
  summarizePhases,
} from './demo-report.js';

const WRITERS = 2;
const READERS = 2;
/** Commits in this long after a switch are counted as "switching", in ms. */
const SETTLE_MS = 1000;
const WORKER_TICK_MS = 250;

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'run the main job: a broker, 2 writer and 2 reader processes on a throwaway SQLite Consensus, ' +
        'with a live table; switches pubsub off and on mid-run',
    )
    .option('--duration <s>', 'seconds the writers commit', DEMO_DEFAULTS.duration)
    .option(
      '--shards <n>',
      'shards (each writer writes, each reader follows all)',
      DEMO_DEFAULTS.shards,
    )
    .option(
      '--rate <n>',
      'commits per second per shard (both writers together)',
      DEMO_DEFAULTS.rate,
    )
    .option(
      '--consensus <url>',
      'shared Consensus: sqlite:PATH, postgres://…, redis://… (default: a throwaway SQLite file)',
    )
    .option(
      '--pubsub-off-at <s>',
      'switch pubsub off this many seconds in',
      DEMO_DEFAULTS.pubsubOffAt,
    )
    .option('--pubsub-off-for <s>', 'for this many seconds (0: never)', DEMO_DEFAULTS.pubsubOffFor)
    .option(
      '--pubsub <mode>',
      'broker (one broker process), nats://HOST:PORT (clients on NATS, no broker) or ' +
        'bridged:nats://HOST:PORT (two brokers bridged by NATS: writers on one, readers on the other)',
      DEMO_DEFAULTS.pubsub,
    )
    .action(async (raw: RawDemoOptions) => {
      process.exitCode = await runDemo(parseDemoOptions(raw));
    });
}

interface Out {
  line(s: string): void;
  status(s: string): void;
}

/** Plain lines when stdout is not a terminal (CI logs); a rewritten status line on a terminal. */
function createOut(): Out {
  const tty = process.stdout.isTTY === true;
  let hasStatus = false;
  const clear = () => {
    if (hasStatus) process.stdout.write('\r\x1b[2K');
    hasStatus = false;
  };
  return {
    line(s) {
      clear();
      process.stdout.write(`${s}\n`);
    },
    status(s) {
      if (!tty) return;
      clear();
      process.stdout.write(`\x1b[2m${s}\x1b[0m`);
      hasStatus = true;
    },
  };
}

const sum = (xs: readonly DemoCounters[], f: (c: DemoCounters) => number) =>
  xs.reduce((a, c) => a + f(c), 0);

/** Sums a counter in the broker's Prometheus text, for samples whose labels include `match`. */
function sumPromText(text: string, name: string, match: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) || !line.includes(match)) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) total += v;
  }
  return total;
}

/** Runs the demo; resolves with the exit code. */
export async function runDemo(opts: DemoOptions): Promise<number> {
  checkBuilt();
  const out = createOut();
  const dir = mkdtempSync(join(tmpdir(), 'persist-pubsub-demo-'));
  const consensusUrl = opts.consensus ?? `sqlite:${join(dir, 'consensus.db')}`;
  const flagsFile = join(dir, 'flags.json');
  const writeFlags = (enabled: boolean) => {
    const tmp = `${flagsFile}.tmp`;
    writeFileSync(tmp, JSON.stringify({ persist_pubsub_client_enabled: enabled }));
    renameSync(tmp, flagsFile); // atomic: a watcher never sees half a file
  };
  writeFlags(true);

  const interrupt = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      killAllChildrenNow();
      rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    }
    out.line(`\n${sig}: stopping every process (again to force)`);
    interrupt.abort(new Error(`interrupted by ${sig}`));
  };
  const onExit = () => {
    killAllChildrenNow();
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);

  const failures: string[] = [];
  let brokerErrors = 0;
  const brokers: BrokerChild[] = [];
  const workers: WorkerChild[] = [];
  let expectedExit = false;
  try {
    const shards = Array.from({ length: opts.shards }, () => `s${randomUUID()}`);
    const mode = opts.pubsub;
    const procs = `${WRITERS} writer and ${READERS} reader processes`;
    out.line(
      mode.kind === 'broker'
        ? `persist-pubsub demo: starting the broker, ${procs}…`
        : mode.kind === 'bridged'
          ? `persist-pubsub demo: starting 2 brokers bridged through NATS ${mode.url}, ${procs}…`
          : `persist-pubsub demo: starting ${procs} on NATS ${mode.url} (no broker)…`,
    );
    const brokerNames = mode.kind === 'bridged' ? ['broker-w', 'broker-r'] : ['broker'];
    if (mode.kind !== 'nats') {
      for (const name of brokerNames) {
        let bridgeUp: () => void = () => {};
        const bridgeConnected = new Promise<void>((resolve) => {
          bridgeUp = resolve;
        });
        const flags = ['--drain-deadline-ms', '2000'];
        if (mode.kind === 'bridged') flags.push('--bridge', mode.url);
        const b = await raceSignal(
          startBrokerChild(flags, (line, raw) => {
            if (line.msg === 'nats bridge connected') bridgeUp();
            if ((line.level ?? 0) >= 50) {
              brokerErrors++;
              process.stderr.write(`${name}: ${raw}\n`);
            }
          }),
          interrupt.signal,
        );
        brokers.push(b);
        void b.exited.then(({ code, signal }) => {
          if (!expectedExit) {
            failures.push(
              `${mode.kind === 'bridged' ? name : 'the broker'} exited during the run (${signal ?? code})`,
            );
            interrupt.abort(new Error(`${name} exited`));
          }
        });
        // A bridged broker forwards nothing until its NATS connection is up.
        if (mode.kind === 'bridged') {
          await raceSignal(
            Promise.race([
              bridgeConnected,
              new Promise<never>((_, reject) =>
                setTimeout(
                  () => reject(new Error(`${name}: no NATS bridge to ${mode.url} within 15 s`)),
                  15_000,
                ).unref(),
              ),
            ]),
            interrupt.signal,
          );
        }
      }
    }
    /** pubsub URL for a role: its broker's gRPC address, or NATS directly. */
    const pubsubFor = (role: 'reader' | 'writer'): string => {
      if (mode.kind === 'nats') return mode.url;
      const b = brokers[role === 'reader' ? brokers.length - 1 : 0] as BrokerChild;
      return `grpc://${b.grpc}`;
    };

    // Latest cumulative counters per worker; commits joined with their applications.
    const latest = new Map<string, DemoCounters>();
    const connected = new Map<string, boolean>();
    const commitDone = new Map<string, { doneMs: number; updateMs: number; waiting: number }>();
    const early = new Map<string, number[]>(); // applied before the writer's report arrived
    let pending: DemoSample[] = [];
    let pendingUpdateMs: number[] = [];
    const allSamples: DemoSample[] = [];
    const allUpdates: DemoSample[] = [];
    let negative = 0;
    const sample = (doneMs: number, appliedMs: number) => {
      const l = appliedMs - doneMs;
      // A reader cannot apply before the commit; a small negative is clock skew between processes.
      if (l < 0) negative++;
      const s: DemoSample = [doneMs, Math.max(0, l)];
      pending.push(s);
      allSamples.push(s);
    };
    const onMessage = (name: string) => (m: WorkerMessage) => {
      if (m.type === 'tick' || m.type === 'done') latest.set(name, m.counters);
      if (m.type !== 'tick') return;
      connected.set(name, m.connected);
      for (const [shard, n, startMs, doneMs] of m.commits) {
        const key = `${shard}:${n}`;
        const seen = early.get(key) ?? [];
        early.delete(key);
        for (const a of seen) sample(doneMs, a);
        const waiting = READERS - seen.length;
        if (waiting > 0) commitDone.set(key, { doneMs, updateMs: doneMs - startMs, waiting });
        pendingUpdateMs.push(doneMs - startMs);
        allUpdates.push([doneMs, doneMs - startMs]);
      }
      for (const [shard, n, appliedMs] of m.applied) {
        const key = `${shard}:${n}`;
        const c = commitDone.get(key);
        if (c === undefined) {
          early.set(key, [...(early.get(key) ?? []), appliedMs]);
          continue;
        }
        sample(c.doneMs, appliedMs);
        if (--c.waiting === 0) commitDone.delete(key);
      }
    };
    const intervalMs = (1000 * WRITERS) / opts.rate;
    const base = {
      consensus: consensusUrl,
      flagsFile,
      shards,
      intervalMs,
      tickMs: WORKER_TICK_MS,
    };
    const configs: DemoWorkerConfig[] = [
      ...Array.from({ length: READERS }, (_, i) => ({
        ...base,
        role: 'reader' as const,
        pubsub: pubsubFor('reader'),
        name: `reader-${i + 1}`,
        offsetMs: 0,
      })),
      ...Array.from({ length: WRITERS }, (_, i) => ({
        ...base,
        role: 'writer' as const,
        pubsub: pubsubFor('writer'),
        name: `writer-${i + 1}`,
        // Every commit of every writer evenly spaced (see the spread in the worker).
        offsetMs: (i * intervalMs) / (WRITERS * opts.shards),
      })),
    ];
    for (const c of configs) {
      const w = startWorkerChild(c, onMessage(c.name));
      workers.push(w);
      void w.exited.then(({ code, signal }) => {
        if (!expectedExit && (code !== 0 || signal !== null)) {
          failures.push(`${c.name} exited during the run (${signal ?? code})`);
          interrupt.abort(new Error(`${c.name} exited`));
        }
      });
    }
    const readers = workers.filter((w) => w.name.startsWith('reader'));
    const writers = workers.filter((w) => w.name.startsWith('writer'));
    await raceSignal(Promise.all(workers.map((w) => w.next('ready', 30_000))), interrupt.signal);

    const workerPids = `(pids ${workers.map((w) => w.process.pid).join(' ')})`;
    const [b0, b1] = brokers;
    if (mode.kind === 'broker' && b0 !== undefined) {
      out.line(
        `persist-pubsub demo: broker (pid ${b0.process.pid}) on grpc ${b0.grpc}, admin http://${b0.admin}; ` +
          `${WRITERS} writers and ${READERS} readers ${workerPids}`,
      );
    } else if (mode.kind === 'bridged' && b0 !== undefined && b1 !== undefined) {
      out.line(
        `persist-pubsub demo: brokers bridged through NATS ${mode.url}: writers' broker (pid ${b0.process.pid}) ` +
          `on grpc ${b0.grpc}, admin http://${b0.admin}; readers' broker (pid ${b1.process.pid}) on grpc ${b1.grpc}, ` +
          `admin http://${b1.admin}; ${WRITERS} writers and ${READERS} readers ${workerPids}`,
      );
    } else if (mode.kind === 'nats') {
      out.line(
        `persist-pubsub demo: clients on NATS ${mode.url} directly, no broker; ` +
          `${WRITERS} writers and ${READERS} readers ${workerPids}`,
      );
    }
    out.line(
      `Consensus ${opts.consensus === undefined ? `${consensusUrl} (throwaway)` : consensusUrl}; ` +
        `${opts.shards} shards at ${opts.rate} commits/s each for ${opts.durationS} s; ` +
        (opts.pubsubOffForS > 0
          ? `pubsub off at ${opts.pubsubOffAtS} s for ${opts.pubsubOffForS} s (flags file ${flagsFile})`
          : 'pubsub stays on'),
    );
    out.line(
      "commit ms: a writer's update incl. the Consensus compare-and-set; p50/p99: committed → applied in a reader;",
    );
    out.line(
      "reads: the readers' Consensus reads (head/scan); polls: the readers' fallback polls; " +
        'writers also read after losing a race (in the summary)',
    );
    out.line('');
    out.line(ROW_HEADER);

    const startWall = wallMs();
    const start = performance.now();
    for (const w of workers) w.send({ type: 'start' });
    const switches: Switches = {};
    let pubsubOn = true;
    const rows: (Row & { endMs: number; reads: number; writerReads: number; polls: number })[] = [];
    let prev = { commits: 0, reads: 0, writerReads: 0, polls: 0 };
    let brokerDrops = 0;
    const totals = () => {
      const cs = [...latest.values()];
      const of = (role: string) =>
        [...latest].filter(([name]) => name.startsWith(role)).map(([, c]) => c);
      const readerCs = of('reader');
      const writerCs = of('writer');
      return {
        commits: sum(cs, (c) => c.commits),
        reads: sum(readerCs, (c) => c.reads),
        writerReads: sum(writerCs, (c) => c.reads),
        polls: sum(cs, (c) => c.polls),
        drops: sum(cs, (c) => c.pushDrops) + brokerDrops,
        errors: sum(cs, (c) => c.errors + c.invalidDiffs) + brokerErrors,
      };
    };
    const offAtS = opts.pubsubOffForS > 0 ? opts.pubsubOffAtS : Number.POSITIVE_INFINITY;
    const onAtS = offAtS + opts.pubsubOffForS;
    for (let second = 1; second <= Math.ceil(opts.durationS); second++) {
      // Switch at the planned moment, between ticks if it falls there.
      const tickEnd = Math.min(second, opts.durationS) * 1000;
      for (const [atS, enabled] of [
        [offAtS, false],
        [onAtS, true],
      ] as const) {
        if (atS * 1000 < tickEnd && atS * 1000 >= (second - 1) * 1000 && pubsubOn !== enabled) {
          await sleep(start + atS * 1000 - performance.now(), { signal: interrupt.signal });
          writeFlags(enabled);
          pubsubOn = enabled;
          if (enabled) switches.onAtMs = wallMs();
          else switches.offAtMs = wallMs();
          out.line(`       >>> persist_pubsub_client_enabled = ${enabled} (flags file)`);
        }
      }
      await sleep(start + tickEnd - performance.now(), { signal: interrupt.signal });
      brokerDrops = (await Promise.all(brokers.map((b) => scrapeBrokerDrops(b.admin)))).reduce(
        (a, n) => a + n,
        0,
      );
      const t = totals();
      const lat = pending.map(([, l]) => l).sort((a, b) => a - b);
      const upd = pendingUpdateMs.sort((a, b) => a - b);
      pending = [];
      pendingUpdateMs = [];
      const spanS = (tickEnd - (second - 1) * 1000) / 1000;
      const row = {
        t: tickEnd / 1000,
        pubsub: pubsubOn ? ('on' as const) : ('off' as const),
        updatesPerS: (t.commits - prev.commits) / spanS,
        p50Ms: percentile(lat, 0.5),
        p99Ms: percentile(lat, 0.99),
        updateP50Ms: percentile(upd, 0.5),
        readsPerS: (t.reads - prev.reads) / spanS,
        pollsPerS: (t.polls - prev.polls) / spanS,
        drops: t.drops,
        errors: t.errors,
        readersConnected: readers.filter((r) => connected.get(r.name) === true).length,
        endMs: startWall + tickEnd,
        reads: t.reads - prev.reads,
        writerReads: t.writerReads - prev.writerReads,
        polls: t.polls - prev.polls,
      };
      rows.push(row);
      prev = t;
      out.line(formatRow(row, READERS));
      out.status(
        `  pubsub ${pubsubOn ? 'on' : 'OFF (readers poll)'} · ${Math.max(0, Math.ceil(opts.durationS - tickEnd / 1000))} s left · Ctrl-C stops`,
      );
    }

    // Writers stop; the heads they left are what every reader must reach.
    for (const w of writers) w.send({ type: 'stop' });
    const writerDone = await raceSignal(
      Promise.all(writers.map((w) => w.next('done', 30_000))),
      interrupt.signal,
    );
    const commitsByShard = new Map<string, number>();
    for (const d of writerDone) {
      failures.push(...d.failures);
      for (const [s, n] of Object.entries(d.commitsByShard)) {
        commitsByShard.set(s, (commitsByShard.get(s) ?? 0) + n);
      }
    }
    // The truth, read by a polling-only client of its own.
    const verifier = await createPersistClient({
      consensus: consensusUrl,
      callerId: 'demo-verifier',
    });
    const truth = new Map<string, { seqno: bigint; n: number; lastStamp: number | null }>();
    try {
      for (const s of shards) {
        const h = await verifier.openShard(s, demoModel);
        truth.set(s, { seqno: h.seqno, n: h.state.n, lastStamp: h.state.stamps.at(-1) ?? null });
        h.close();
      }
    } finally {
      await verifier.close();
    }
    const heads = Object.fromEntries([...truth].map(([s, v]) => [s, String(v.seqno)]));
    for (const r of readers) r.send({ type: 'finish', heads });
    const readerDone = await raceSignal(
      Promise.all(readers.map((r) => r.next('done', 30_000))),
      interrupt.signal,
    );
    let readersAtHead = 0;
    for (const [i, d] of readerDone.entries()) {
      failures.push(...d.failures);
      const name = readers[i]?.name ?? `reader-${i + 1}`;
      let ok = true;
      for (const s of shards) {
        const want = truth.get(s);
        const got = d.views[s];
        const commits = commitsByShard.get(s) ?? 0;
        if (want === undefined || got === undefined) {
          ok = false;
          failures.push(`${name}: no view of ${s}`);
        } else if (
          got.seqno !== String(want.seqno) ||
          got.n !== want.n ||
          got.lastStamp !== want.lastStamp ||
          want.n !== commits
        ) {
          ok = false;
          failures.push(
            `${name}: ${s} at seqno ${got.seqno} with ${got.n} commits; Consensus head ${want.seqno} with ${want.n}; writers committed ${commits}`,
          );
        }
      }
      if (ok) readersAtHead++;
    }

    // Everything is done: stop the brokers (they drain and exit 0) and let workers exit.
    expectedExit = true;
    const exits = await Promise.all(
      workers.map(async (w) => {
        const timer = setTimeout(() => void stopChild(w), 5000);
        const e = await w.exited;
        clearTimeout(timer);
        return { name: w.name, ...e };
      }),
    );
    const brokerExits = await Promise.all(
      brokers.map(async (b, i) => {
        await stopChild(b, 5000);
        return { name: brokerNames[i] ?? 'broker', ...(await b.exited) };
      }),
    );
    for (const e of [...exits, ...brokerExits]) {
      if (e.code !== 0) failures.push(`${e.name} exited with ${e.signal ?? e.code}`);
    }

    const t = totals();
    const errors = t.errors + failures.length;
    const commits = [...commitsByShard.values()].reduce((a, n) => a + n, 0);
    out.line('');
    out.line(
      `summary: ${commits} commits by ${WRITERS} writers on ${opts.shards} shards, ` +
        `${allSamples.length} applications in ${READERS} readers` +
        (negative > 0 ? ` (${negative} timed below 0 by clock skew, counted as 0)` : ''),
    );
    if (mode.kind !== 'broker') {
      out.line(
        mode.kind === 'nats'
          ? `pubsub: nats (clients on NATS ${mode.url} directly, no broker)`
          : `pubsub: bridged (writers on one broker, readers on another, bridged through NATS ${mode.url})`,
      );
    }
    out.line(
      `latency: a writer's compare-and-set committed → applied in a reader, by the phase of the commit; ` +
        `commits in the ${SETTLE_MS} ms after a switch count as "switching"`,
    );
    out.line(SUMMARY_HEADER);
    for (const p of summarizePhases(allSamples, allUpdates, rows, switches, SETTLE_MS)) {
      out.line(formatPhase(p));
    }
    out.line(
      `readers at the final head: ${readersAtHead}/${READERS} (every shard's seqno and state equal Consensus)`,
    );
    out.line(`drops: ${t.drops}`);
    const warnings = sum([...latest.values()], (c) => c.warnings);
    if (warnings > 0) {
      out.line(
        `warnings: ${warnings} (worker log lines at warn level, e.g. a busy Consensus retried)`,
      );
    }
    out.line(`errors: ${errors}`);
    for (const f of failures) out.line(`  ${f}`);
    const ok = readersAtHead === READERS && errors === 0;
    out.line(`result: ${ok ? 'OK' : 'FAILED'}`);
    return ok ? 0 : 1;
  } catch (err) {
    if (interrupt.signal.aborted && signals > 0) {
      out.line('demo: interrupted; every process stopped');
      return 130;
    }
    for (const f of failures) process.stderr.write(`demo: ${f}\n`);
    throw err;
  } finally {
    expectedExit = true;
    await stopAllChildren(3000);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The broker's undelivered diffs: queue overflow only (not diffs for closing connections). */
async function scrapeBrokerDrops(admin: string): Promise<number> {
  try {
    const res = await fetch(`http://${admin}/metrics`, { signal: AbortSignal.timeout(500) });
    return sumPromText(await res.text(), 'persist_pubsub_server_dropped_diffs_total', 'queue_full');
  } catch {
    return 0;
  }
}
