/**
 * `npm run bench -- broker [--fanouts 1,10,100] [--rates 50000,100000,200000,300000,400000]
 *   [--step-ms 3000] [--shards 100] [--sub-workers 1] [--skip-rss] [--cpu-prof]
 *   [--client-sched batch|other]`
 *
 * The broker runs in its own process (`broker-server.ts`), publishers and subscribers in others
 * (`broker-client.ts`, raw `node:http2` clients). For each fan-out F, every shard has exactly F
 * subscriber connections; one publisher pushes 256 B diffs round-robin over the shards at a
 * paced rate, stepping the target delivered-diffs rate up until the broker falls behind (less
 * than 95% delivered, or p99 over 1 s). For each step: delivered diffs/s, fan-out latency
 * p50/p99/p99.9/max (publisher write → subscriber read, HDR histogram, µs), the broker's
 * CPU-seconds per million deliveries (its own `process.cpuUsage()`), and two figures from inside
 * the broker that separate its own latency from the machine's: the share of its flushes written
 * within 1 ms of receipt (its fan-out latency histogram) and its worst event-loop stall; and the
 * bench subscriber's own worst stall (its longest run on a CPU, its longest tick gap), so that a
 * tail is told apart as the broker's or the subscriber's; and the broker main thread's whole
 * run-queue wait over the step, ms per second (runnable, not running: the machine's share of
 * its stalls), with how often per second it was preempted (its involuntary context switches).
 *
 * The publisher and subscriber processes of the ladder (and of `--brokers`, `--idle`, the RSS step)
 * run at the default policy (`--client-sched`, `DEFAULT_CLIENT_SCHED` in `e2e-child.ts`);
 * `--client-sched batch` runs them at SCHED_BATCH: the same CPU share as the broker, but a
 * woken client never preempts it (its own wake-up waits instead). At `other` (every run before
 * session 7) the subscriber, woken by the broker's own socket writes onto the broker's CPU,
 * preempted the broker ~800-1,500 times a second at fan-out 10, 200k/s (at `batch` 21-23). A
 * batch subscriber's own wake-up delay goes into the latency: at `--reference` p99 1.9, 1.5 ms at
 * `other`, 3.6, 3.4 at `batch` (broker CPU per delivery 41.6, 35.5 / 36.2, 35.9 µs).
 *
 * Then the memory figure: a fresh broker, 1k HTTP/2 connections holding 100k subscriptions over
 * 10k shards (10 subscribers each), and one push per shard (filling the resume rings): RSS
 * before, after subscribing and after the pushes.
 *
 * `--reference` instead reproduces the end-to-end benchmark's reference load at the broker alone:
 * `--shards` (default 1000) shards, two publisher processes each pushing to its half of them at
 * `--reference-rate / 2` pushes/s (default 1500 in all), one push per write, spread evenly in
 * time like the e2e writers' commits, and two subscriber connections (each its own HTTP/2
 * session, like two reader processes) subscribed to every shard: fan-out 2, 3000 deliveries/s.
 * It prints the broker's CPU µs per delivery (its own `process.cpuUsage()`), its user / system
 * split and context switches per delivery (all its threads, `/proc`: about one voluntary switch
 * per wake-up), its idle CPU with the same connections and default keepalive, and the clients'
 * CPU (they must not be the limit).
 * `--reference-burst-ms N` offers the same rate in bursts: every push due within one N ms slot is
 * written at the slot's start, in one wake-up of each publisher, still one write per push
 * (`bench/pace.ts`; default 0, evenly spread). It shows the share of the per-wake-up cost.
 * `--server nats` runs the same reference load through nats-server (started on a free port as
 * `bench fanout` does, `bench/nats-server.ts`): one subject per shard, the two publishers' lean
 * NATS clients one PUB per push, two subscriber TCP connections with one SUB per subject
 * (`fanout-nats-client.ts`); its CPU is utime+stime of all its threads from `/proc` (10 ms ticks:
 * measure for 10 s or more). With `--reference` only; no write windows, tokens or profiles.
 *
 * `--brokers N` runs N broker processes, each shard on the one rendezvous hashing picks (the SDK's
 * `mode: 'sharded'`, the same `src/client/rendezvous.ts`), one publisher per broker pushing its
 * shards, every subscriber connection holding a stream to each broker for its shards there.
 *
 * `--tokens` gives the broker scoped tokens (`BrokerOptions.tokens`, `--auth-tokens-file`) and
 * every client one of them, so each push and subscribe is authorized (the A/B of that check).
 *
 * `--idle [--idle-streams 2000] [--idle-per-session 1] [--idle-keepalive-ms N]` measures the
 * broker's idle CPU instead: that many subscribed streams, nothing pushed, the default keepalive
 * (or N ms; 0 disables it), over `--step-ms` (35 s, 10 s with `--quick`).
 *
 * `--cpu-prof` runs the broker under `node --cpu-prof` (profile written to .tmp/cpu-prof/);
 * `--trace-gc` under `node --trace-gc` (each pause printed); `--heap-prof` samples every
 * allocation of the broker over each step, collected ones included (one `.heapprofile` per step
 * in .tmp/heap-prof/, for `report-profile.js`). Each step reports the broker's scavenges,
 * mark-compacts and longest GC pause.
 * `--broker-node-flags A,B` adds node / V8 flags to the broker process (e.g.
 * `--trace-gc-nvp,--max-semi-space-size=32`).
 * `--write-window-us N` (with `--reference`): the broker's write window (`--write-window-us` of the
 * broker), and the same window in the publishers (the SDK sender's
 * `persist_pubsub_client_write_window_us`), unless `--publisher-write-window-us M` says otherwise.
 * `--server floor` runs it on bare `node:http2` and the protocol codec (`broker-floor-server.ts`):
 * what the stack itself costs, below which no broker logic can go.
 * `--http2-server own|node` picks our broker's HTTP/2 server (`BrokerOptions.http2Server`; the
 * broker's default when not given), for an A/B within one build.
 * `--socket unix` (default `tcp`): the broker (ours or the floor) listens on a Unix socket and
 * every client dials it (`listen: { path }`, the sidecar's hop without the TCP/IP stack).
 * `--server grpc-js` runs the same fan-out on grpc-js with pass-through serializers instead
 * (`broker-grpcjs-server.ts`): the measurement behind the choice of stack.
 */
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';
import { createRendezvous } from '../src/client/index.js';
import {
  Child,
  type ClientSched,
  DEFAULT_CLIENT_SCHED,
  here,
  loadAverage,
  procContextSwitches,
  procCpu,
  setProcessSched,
  threadContextSwitches,
} from './e2e-child.js';
import { startNatsServer } from './nats-server.js';
import { noStall, type TickStalls } from './tick-stalls.js';
import { UsageError } from './usage.js';

const DIFF_BYTES = 256;

export const brokerBench = {
  description:
    'broker fan-out: delivered diffs/s, fan-out latency, broker CPU per million deliveries, RSS at 100k subscriptions',
  run,
};

interface Stats {
  /** Prometheus text of the broker's fan-out latency histogram (receive → written, per flush). */
  fanoutLatencyBuckets?: string;
  /** The broker's event-loop delay since the previous stats request, ms. */
  loopDelayMs?: { p50: number; p99: number; max: number };
  cpu: { user: number; system: number };
  rss: number;
  heapUsed: number;
  subscriptions: number;
  dropped: number;
  /** GC pauses since the previous stats request. */
  gc?: { scavenges: number; markCompacts: number; pauseMs: number; maxPauseMs: number };
  /**
   * The longest gap between two 1 ms ticks, and inside it the main thread's time on a CPU and in
   * the run queue (waiting for a CPU), and the GC pauses, ms.
   */
  stall?: TickStalls;
}

/** Which server runs as the broker: ours, or the grpc-js pass-through comparison point. */
let serverModule = './broker-server.js';
/** Run the broker under `node --trace-gc` (`--trace-gc`). */
let traceGc = false;
/** Sample every allocation of the broker over each step (`--heap-prof`). */
let heapProf = false;
/** The scheduling policy of the bench's publisher and subscriber processes (`--client-sched`). */
let clientSched: ClientSched = DEFAULT_CLIENT_SCHED;
/** More node / V8 flags for the broker process (`--broker-node-flags`, comma-separated). */
let brokerNodeFlags: string[] = [];

async function startBroker(
  cpuProf: boolean,
  args: string[] = ['--loop-resolution-ms', '1'],
): Promise<{ child: Child; port: number }> {
  const execArgv = cpuProf ? ['--cpu-prof', '--cpu-prof-dir=.tmp/cpu-prof'] : [];
  // `--trace-gc`: the broker prints each GC pause (is a stall a collection?).
  if (traceGc) execArgv.push('--trace-gc');
  execArgv.push(...brokerNodeFlags);
  const child = new Child(fork(here(serverModule), args, { execArgv, stdio: 'inherit' }));
  const ready = await child.next<{ port: number }>('ready');
  return { child, port: ready.port };
}

/** A bench client process: ours (`broker-client.ts`) or nats-server's (`fanout-nats-client.ts`). */
async function startClient(module = './broker-client.js'): Promise<Child> {
  const child = new Child(fork(here(module), [], { stdio: 'inherit' }));
  await child.next('ready');
  setProcessSched(child.proc.pid ?? 0, clientSched);
  return child;
}

const stats = (broker: Child) => broker.request<Stats>({ type: 'stats' }, 'stats');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (b: number) => (b / 1024 / 1024).toFixed(1);

/** Connection j of n subscribes to shard i iff (i + j) mod n < fanout: every shard gets `fanout`. */
function layout(shards: string[], fanout: number, connections: number): string[][] {
  const out: string[][] = Array.from({ length: connections }, () => []);
  shards.forEach((s, i) => {
    for (let k = 0; k < fanout; k++) out[(i + k) % connections]!.push(s);
  });
  return out;
}

async function waitForSubscriptions(broker: Child, expected: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const s = await stats(broker);
    if (s.subscriptions >= expected) return;
    if (Date.now() > deadline)
      throw new Error(`only ${s.subscriptions} of ${expected} subscriptions`);
    await sleep(50);
  }
}

/** Share of histogram observations between two scrapes that fell in the bucket `le`. */
function withinShare(before: string | undefined, after: string | undefined, le: string): number {
  const read = (text: string | undefined, bucket: string): number =>
    Number(
      new RegExp(`_bucket\\{le="${bucket.replace('+', '\\+')}"\\} (\\d+)`).exec(text ?? '')?.[1] ??
        0,
    );
  const total = read(after, '+Inf') - read(before, '+Inf');
  return total === 0 ? 0 : (read(after, le) - read(before, le)) / total;
}

/** Waits until the subscribers stop receiving (the previous phase's diffs have all landed). */
async function settle(subs: Child[]): Promise<void> {
  let last = -1;
  const deadline = Date.now() + 10_000;
  for (;;) {
    let n = 0;
    for (const w of subs)
      n += (await w.request<{ received: number }>({ type: 'report' }, 'report')).received;
    if (n === last || Date.now() > deadline) return;
    last = n;
    await sleep(200);
  }
}

interface StepResult {
  fanout: number;
  targetPerSecond: number;
  deliveredPerSecond: number;
  deliveredRatio: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  cpuSecondsPerMillion: number;
  brokerCpuPercent: number;
  /** Share of the broker's flushes written within 1 ms of receipt (its own histogram). */
  brokerWithin1ms: number;
  /** The broker's worst event-loop delay during the step, ms (scheduling stalls show here). */
  brokerLoopMaxMs: number;
  dropped: number;
  /** The broker's GC during the step: scavenges, mark-compacts, longest pause (ms). */
  scavenges: number;
  markCompacts: number;
  gcMaxPauseMs: number;
  /** The worst broker's longest tick gap (wall ms), with its on-CPU, run-queue and GC ms. */
  stall: TickStalls;
  /** Any broker's longest run on a CPU between two ticks, ms (its own stall, load aside). */
  brokerBusyMs: number;
  /** The GC pauses inside that run, ms. */
  brokerBusyGcMs: number;
  /** The worst broker main thread's run-queue wait over the step, ms per second. */
  brokerRunQueueMsPerS: number;
  /**
   * The most preemptions per second of a broker's main thread over the step (its involuntary
   * context switches: another task took its CPU while it was runnable).
   */
  brokerPreemptionsPerS: number;
  /**
   * The worst bench subscriber's own stall: its longest run on a CPU between two ticks and its
   * longest tick gap, ms (is a latency tail the broker's or the subscriber's?).
   */
  subscriberBusyMs: number;
  subscriberGapMs: number;
  /** The bench's own publisher and subscriber processes, % of one core (they must not be the limit). */
  publisherCpuPercent: number;
  subscribersCpuPercent: number;
}

/** Every broker's stats, summed (CPU, drops, subscriptions) or worst (loop stall). */
async function allStats(brokers: Child[]): Promise<Stats[]> {
  return Promise.all(brokers.map(stats));
}

async function runFanout(
  fanout: number,
  rates: number[],
  stepMs: number,
  shardCount: number,
  subWorkers: number,
  cpuProf: boolean,
  brokerCount: number,
): Promise<StepResult[]> {
  const started = await Promise.all(
    Array.from({ length: brokerCount }, () => startBroker(cpuProf)),
  );
  const brokers = started.map((b) => b.child);
  const ports = started.map((b) => b.port);
  const subs = await Promise.all(Array.from({ length: subWorkers }, () => startClient()));
  // One publisher per broker, each pushing its broker's shards (as a writer's SDK would).
  const pubs = await Promise.all(ports.map(() => startClient()));
  const results: StepResult[] = [];
  try {
    const shards = Array.from({ length: shardCount }, () => `s${randomUUID()}`);
    // Sharded like the SDK's `mode: 'sharded'`: each shard on its rendezvous broker.
    const names = ports.map((p) => `grpc://127.0.0.1:${p}`);
    const ranking = createRendezvous(names);
    const shardsOf = names.map((n) => shards.filter((s) => ranking.owner(s) === n));
    const connections = Math.max(fanout, 10);
    const conns = layout(shards, fanout, connections);
    for (const [b, port] of ports.entries()) {
      const mine = new Set(shardsOf[b]);
      await Promise.all(
        subs.map((w, i) =>
          w.request(
            {
              type: 'subscribe',
              port,
              connections: conns
                .filter((_, j) => j % subWorkers === i)
                .map((c) => c.filter((s) => mine.has(s))),
              connectionsPerSession: 10,
            },
            'subscribed',
          ),
        ),
      );
      await waitForSubscriptions(brokers[b] as Child, (shardsOf[b]?.length ?? 0) * fanout);
    }
    const publishAll = (pushesPerSecond: number, durationMs: number, timeoutMs?: number) =>
      Promise.all(
        pubs.map((pub, b) =>
          pub.request<{ sent: number }>(
            {
              type: 'publish',
              port: ports[b],
              shards: shardsOf[b],
              pushesPerSecond: (pushesPerSecond * (shardsOf[b]?.length ?? 0)) / shardCount,
              durationMs,
              diffBytes: DIFF_BYTES,
            },
            'published',
            timeoutMs,
          ),
        ),
      );
    // Warm up the JIT on both sides.
    await Promise.all(subs.map((w) => w.request({ type: 'reset' }, 'reset')));
    await publishAll(Math.min(20_000, 50_000 / fanout), 1000);
    await settle(subs);
    for (const rate of rates) {
      const pushesPerSecond = rate / fanout;
      await Promise.all(subs.map((w) => w.request({ type: 'reset' }, 'reset')));
      const before = await allStats(brokers);
      const preempted = () =>
        brokers.map((b) => threadContextSwitches(b.proc.pid ?? 0).involuntary);
      const preempted0 = preempted();
      const preemptedSince = performance.now();
      const clientsBefore = await clientCpu([...pubs, ...subs]);
      if (heapProf) {
        await Promise.all(
          brokers.map((b) => b.request({ type: 'heap-prof-start' }, 'heap-prof-started')),
        );
      }
      const published = await publishAll(pushesPerSecond, stepMs, stepMs + 30_000);
      // Let in-flight diffs land (bounded).
      const expected = published.reduce((a, p) => a + p.sent, 0) * fanout;
      let received = 0;
      const reports: { received: number; histogram: string; stall?: TickStalls }[] = [];
      const settle = Date.now() + 2000;
      for (;;) {
        reports.length = 0;
        for (const w of subs) {
          reports.push(
            await w.request<{ received: number; histogram: string; stall?: TickStalls }>(
              { type: 'report' },
              'report',
            ),
          );
        }
        received = reports.reduce((a, r) => a + r.received, 0);
        if (received >= expected || Date.now() > settle) break;
        await sleep(100);
      }
      if (heapProf) {
        await Promise.all(
          brokers.map((b, i) =>
            b.request(
              {
                type: 'heap-prof-stop',
                file: `.tmp/heap-prof/broker-${i}-fanout-${fanout}-rate-${rate}.heapprofile`,
              },
              'heap-prof-stopped',
            ),
          ),
        );
      }
      const after = await allStats(brokers);
      const preempted1 = preempted();
      const preemptedSeconds = (performance.now() - preemptedSince) / 1000;
      const clientsAfter = await clientCpu([...pubs, ...subs]);
      const clientPct = (i: number) =>
        ((clientsAfter[i]! - clientsBefore[i]!) / 1000 / stepMs) * 100;
      const merged = hdr.build({
        lowestDiscernibleValue: 1,
        highestTrackableValue: 60_000_000,
        numberOfSignificantValueDigits: 3,
      });
      for (const r of reports) merged.add(hdr.decodeFromCompressedBase64(r.histogram));
      const cpuOf = (x: Stats) => x.cpu.user + x.cpu.system;
      const cpuUs = after.reduce((a, x, b) => a + cpuOf(x) - cpuOf(before[b] as Stats), 0);
      const result: StepResult = {
        fanout,
        targetPerSecond: rate,
        deliveredPerSecond: Math.round(received / (stepMs / 1000)),
        deliveredRatio: expected === 0 ? 0 : received / expected,
        p50Us: merged.getValueAtPercentile(50),
        p99Us: merged.getValueAtPercentile(99),
        p999Us: merged.getValueAtPercentile(99.9),
        maxUs: merged.maxValue,
        cpuSecondsPerMillion: received === 0 ? 0 : cpuUs / 1e6 / (received / 1e6),
        brokerCpuPercent: (cpuUs / 1000 / stepMs) * 100,
        dropped: after.reduce((a, x, b) => a + x.dropped - (before[b] as Stats).dropped, 0),
        // The worst broker's share and stall.
        brokerWithin1ms: Math.min(
          ...after.map((x, b) =>
            withinShare(before[b]?.fanoutLatencyBuckets, x.fanoutLatencyBuckets, '0.001'),
          ),
        ),
        brokerLoopMaxMs: Math.max(...after.map((x) => x.loopDelayMs?.max ?? 0)),
        scavenges: after.reduce((a, x) => a + (x.gc?.scavenges ?? 0), 0),
        markCompacts: after.reduce((a, x) => a + (x.gc?.markCompacts ?? 0), 0),
        gcMaxPauseMs: Math.max(...after.map((x) => x.gc?.maxPauseMs ?? 0)),
        stall: after.reduce<TickStalls>(
          (a, x) => (x.stall !== undefined && x.stall.wallMs > a.wallMs ? x.stall : a),
          noStall(),
        ),
        ...(() => {
          const busiest = after.reduce<TickStalls>(
            (a, x) => (x.stall !== undefined && x.stall.busyMs > a.busyMs ? x.stall : a),
            noStall(),
          );
          return { brokerBusyMs: busiest.busyMs, brokerBusyGcMs: busiest.busyGcMs };
        })(),
        brokerPreemptionsPerS: Math.max(
          ...preempted1.map((n, b) => (n - (preempted0[b] ?? 0)) / preemptedSeconds),
        ),
        brokerRunQueueMsPerS: Math.max(
          ...after.map((x) =>
            x.stall === undefined || x.stall.windowMs === 0
              ? 0
              : (x.stall.runQueueSumMs / x.stall.windowMs) * 1000,
          ),
        ),
        subscriberBusyMs: Math.max(...reports.map((r) => r.stall?.busyMs ?? 0)),
        subscriberGapMs: Math.max(...reports.map((r) => r.stall?.wallMs ?? 0)),
        publisherCpuPercent: pubs.reduce((a, _, i) => a + clientPct(i), 0),
        subscribersCpuPercent: subs.reduce((a, _, i) => a + clientPct(pubs.length + i), 0),
      };
      results.push(result);
      printStep(result);
      if (result.deliveredRatio < 0.95 || result.p99Us > 1_000_000) break;
    }
  } finally {
    await Promise.all(pubs.map((p) => p.stop()));
    await Promise.all(subs.map((w) => w.stop()));
    await Promise.all(brokers.map((b) => b.stop()));
  }
  return results;
}

function printStep(r: StepResult): void {
  const ms = (us: number) => (us / 1000).toFixed(2);
  console.log(
    `| ${r.fanout} | ${r.targetPerSecond} | ${r.deliveredPerSecond} | ${(r.deliveredRatio * 100).toFixed(1)}% | ${ms(r.p50Us)} | ${ms(r.p99Us)} | ${ms(r.p999Us)} | ${ms(r.maxUs)} | ${r.cpuSecondsPerMillion.toFixed(2)} | ${r.brokerCpuPercent.toFixed(0)}% | ${(r.brokerWithin1ms * 100).toFixed(1)}% | ${r.brokerLoopMaxMs.toFixed(1)} | ${r.scavenges} / ${r.markCompacts} | ${r.gcMaxPauseMs.toFixed(1)} | ${r.stall.wallMs.toFixed(0)} / ${r.stall.onCpuMs.toFixed(0)} / ${r.stall.runQueueMs.toFixed(0)} / ${r.stall.gcMs.toFixed(0)} | ${r.brokerBusyMs.toFixed(1)} / ${r.brokerBusyGcMs.toFixed(1)} | ${r.brokerRunQueueMsPerS.toFixed(1)} / ${r.brokerPreemptionsPerS.toFixed(0)} | ${r.subscriberBusyMs.toFixed(1)} / ${r.subscriberGapMs.toFixed(0)} | ${r.dropped} | ${r.publisherCpuPercent.toFixed(0)}% | ${r.subscribersCpuPercent.toFixed(0)}% |`,
  );
}

async function rssAtScale(cpuProf: boolean): Promise<void> {
  const SHARDS = 10_000;
  const CONNECTIONS = 1_000;
  const PER_CONNECTION = 100;
  const { child: broker, port } = await startBroker(cpuProf);
  const workers = await Promise.all([startClient(), startClient()]);
  const pub = await startClient();
  try {
    const base = await stats(broker);
    const shards = Array.from({ length: SHARDS }, () => `s${randomUUID()}`);
    // Connection j takes 100 consecutive shards starting at j * 10: each shard gets 10 subscribers.
    const conns = Array.from({ length: CONNECTIONS }, (_, j) =>
      Array.from({ length: PER_CONNECTION }, (_, k) => shards[(j * 10 + k) % SHARDS]!),
    );
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
          120_000,
        ),
      ),
    );
    await waitForSubscriptions(broker, CONNECTIONS * PER_CONNECTION);
    await sleep(500);
    const subscribed = await stats(broker);
    await Promise.all(workers.map((w) => w.request({ type: 'reset' }, 'reset')));
    await pub.request(
      {
        type: 'publish',
        port,
        shards,
        pushesPerSecond: 20_000,
        durationMs: SHARDS / 20,
        diffBytes: DIFF_BYTES,
      },
      'published',
      60_000,
    );
    await settle(workers);
    const pushed = await stats(broker);
    let received = 0;
    for (const w of workers)
      received += (await w.request<{ received: number }>({ type: 'report' }, 'report')).received;
    console.log(
      `\nMemory (${serverModule}): ${SHARDS} shards × ${CONNECTIONS} HTTP/2 connections × ${subscribed.subscriptions} subscriptions\n\n` +
        '| phase | broker RSS MiB | heap used MiB |\n|---|---|---|\n' +
        `| started, idle | ${mib(base.rss)} | ${mib(base.heapUsed)} |\n` +
        `| ${subscribed.subscriptions} subscriptions | ${mib(subscribed.rss)} | ${mib(subscribed.heapUsed)} |\n` +
        `| + one ${DIFF_BYTES} B push per shard (${received} deliveries, rings filled) | ${mib(pushed.rss)} | ${mib(pushed.heapUsed)} |`,
    );
  } finally {
    await pub.stop();
    await Promise.all(workers.map((w) => w.stop()));
    await broker.stop();
  }
}

interface ClientCpu {
  cpu: { user: number; system: number };
}

const cpuOf = (c: { user: number; system: number }) => c.user + c.system;

/** Each client process's CPU so far (user + system), µs. */
const clientCpu = (clients: Child[]) =>
  Promise.all(
    clients.map(async (c) => cpuOf((await c.request<ClientCpu>({ type: 'cpu' }, 'cpu')).cpu)),
  );

/** The server under the reference load: a forked broker (ours, the floor) or nats-server. */
interface ReferenceServer {
  /** What runs as the broker and how its CPU is read, for the report. */
  description: string;
  port: number;
  pid: number;
  /** Its CPU time so far, µs. */
  cpu(): Promise<{ user: number; system: number }>;
  /** Resolves once `count` subscriptions are active. */
  subscribed(count: number): Promise<void>;
  stop(): Promise<void>;
}

async function startReferenceServer(
  nats: boolean,
  cpuProf: boolean,
  brokerWindowUs: number,
): Promise<ReferenceServer> {
  if (nats) {
    const server = await startNatsServer();
    const cpu = async () => {
      const c = procCpu(server.pid);
      if (c === undefined) throw new Error('nats-server exited');
      return { user: c.userSeconds * 1e6, system: c.systemSeconds * 1e6 };
    };
    // The NATS clients return from `subscribe` once the server has answered a PING after the SUBs.
    return {
      description:
        `nats-server ${server.version} as the broker (CPU = utime+stime of all its threads from ` +
        '/proc, 10 ms ticks), 1 subscriber process (2 TCP connections, one SUB per subject), ' +
        '2 publisher processes (lean NATS protocol clients, one PUB per push)',
      port: server.port,
      pid: server.pid,
      cpu,
      subscribed: async () => {},
      stop: server.stop,
    };
  }
  // No event-loop monitor here: its timer would be most of the idle figure.
  const { child, port } = await startBroker(cpuProf, [
    '--default-keepalive',
    '--write-window-us',
    String(brokerWindowUs),
  ]);
  return {
    description:
      'broker in its own process (CPU = its own user+system time), 1 subscriber process ' +
      '(2 sessions), 2 publisher processes',
    port,
    pid: child.proc.pid ?? 0,
    cpu: async () => (await stats(child)).cpu,
    subscribed: (count) => waitForSubscriptions(child, count),
    stop: () => child.stop(),
  };
}

/** The e2e reference load at the broker alone: see the header (`--reference`). */
async function runReference(
  o: {
    shardCount: number;
    pushesPerSecond: number;
    durationMs: number;
    burstMs: number;
    nats: boolean;
    cpuProf: boolean;
  },
  window: { brokerUs: number; publishersUs: number },
): Promise<void> {
  const { shardCount, pushesPerSecond, durationMs } = o;
  const server = await startReferenceServer(o.nats, o.cpuProf, window.brokerUs);
  const { port } = server;
  console.log(`${server.description}.\n`);
  const clientModule = o.nats ? './fanout-nats-client.js' : './broker-client.js';
  const sub = await startClient(clientModule);
  const pubs = await Promise.all([startClient(clientModule), startClient(clientModule)]);
  try {
    const shards = Array.from({ length: shardCount }, () => `s${randomUUID()}`);
    await sub.request(
      { type: 'subscribe', port, connections: [shards, shards], connectionsPerSession: 1 },
      'subscribed',
    );
    await server.subscribed(shardCount * 2);
    const half = Math.ceil(shardCount / 2);
    const slices = [shards.slice(0, half), shards.slice(half)];
    const publish = (ms: number, rate: number) =>
      Promise.all(
        pubs.map((p, i) =>
          p.request<{ sent: number }>(
            {
              type: 'publish',
              port,
              shards: slices[i]!,
              pushesPerSecond: rate / 2,
              durationMs: ms,
              diffBytes: 512,
              spread: true,
              burstMs: o.burstMs,
              writeWindowUs: window.publishersUs,
            },
            'published',
            ms + 30_000,
          ),
        ),
      );
    // Warm up the JIT on every side, then let the publishers' connections sit idle.
    await sub.request({ type: 'reset' }, 'reset');
    await publish(1000, pushesPerSecond);
    await settle([sub]);
    const idle0 = await server.cpu();
    await sleep(durationMs);
    const idle1 = await server.cpu();
    const idleCpuUs = cpuOf(idle1) - cpuOf(idle0);

    await sub.request({ type: 'reset' }, 'reset');
    const clients0 = await Promise.all(
      [sub, ...pubs].map((c) => c.request<ClientCpu>({ type: 'cpu' }, 'cpu')),
    );
    const before = await server.cpu();
    const switches0 = procContextSwitches(server.pid);
    const sent = (await publish(durationMs, pushesPerSecond)).reduce((a, r) => a + r.sent, 0);
    const expected = sent * 2;
    let report = { received: 0, histogram: '' };
    const deadline = Date.now() + 2000;
    for (;;) {
      report = await sub.request<{ received: number; histogram: string }>(
        { type: 'report' },
        'report',
      );
      if (report.received >= expected || Date.now() > deadline) break;
      await sleep(50);
    }
    const after = await server.cpu();
    const switches1 = procContextSwitches(server.pid);
    const clients1 = await Promise.all(
      [sub, ...pubs].map((c) => c.request<ClientCpu>({ type: 'cpu' }, 'cpu')),
    );
    const h = hdr.decodeFromCompressedBase64(report.histogram);
    const cpuUs = cpuOf(after) - cpuOf(before);
    const clientCpu = clients1.map((c, i) => cpuOf(c.cpu) - cpuOf(clients0[i]!.cpu));
    const seconds = durationMs / 1000;
    const pct = (us: number) => `${((us / 1e6 / seconds) * 100).toFixed(1)}%`;
    const perDelivery = (n: number) => (n / Math.max(1, report.received)).toFixed(1);
    const switchesPer = (n: number) => (n / Math.max(1, report.received)).toFixed(2);
    const windows = o.nats ? '– / –' : `${window.brokerUs} / ${window.publishersUs}`;
    console.log(
      '| write window µs (broker / publishers) | publisher burst ms | shards | pushes/s | deliveries/s | delivered | broker CPU µs per delivery | broker CPU | broker user / system µs per delivery | broker context switches per delivery (voluntary / involuntary) | broker idle CPU | p50 ms | p99 ms | max ms | subscriber CPU | subscriber CPU µs per message | publishers CPU | publishers CPU µs per push |\n' +
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n' +
        `| ${windows} | ${o.burstMs} | ${shardCount} | ${pushesPerSecond} | ${Math.round(report.received / seconds)} | ` +
        `${((report.received / Math.max(1, expected)) * 100).toFixed(1)}% | ` +
        `${perDelivery(cpuUs)} | ${pct(cpuUs)} | ` +
        `${perDelivery(after.user - before.user)} / ${perDelivery(after.system - before.system)} | ` +
        `${switchesPer(switches1.voluntary - switches0.voluntary)} / ` +
        `${switchesPer(switches1.involuntary - switches0.involuntary)} | ` +
        `${pct(idleCpuUs)} (${(idleCpuUs / seconds / 1000).toFixed(2)} ms/s) | ` +
        `${(h.getValueAtPercentile(50) / 1000).toFixed(2)} | ${(h.getValueAtPercentile(99) / 1000).toFixed(2)} | ` +
        `${(h.maxValue / 1000).toFixed(2)} | ` +
        `${pct(clientCpu[0]!)} | ${perDelivery(clientCpu[0]!)} | ${pct(clientCpu[1]! + clientCpu[2]!)} | ` +
        `${((clientCpu[1]! + clientCpu[2]!) / Math.max(1, sent)).toFixed(1)} |`,
    );
  } finally {
    await Promise.all(pubs.map((p) => p.stop()));
    await sub.stop();
    await server.stop();
  }
}

/**
 * The broker's idle CPU (`--idle`): `streams` PubSub streams, `perSession` to an HTTP/2 session,
 * each subscribed to its own shard, nothing pushed; the broker's own CPU over `durationMs`
 * with the default keepalive (a ping per session every 30 s), so its timers are the figure.
 */
async function runIdle(
  streams: number,
  perSession: number,
  durationMs: number,
  keepaliveTimeMs: number | undefined,
): Promise<void> {
  const { child: broker, port } = await startBroker(
    false,
    keepaliveTimeMs === undefined
      ? ['--default-keepalive']
      : ['--keepalive-time-ms', String(keepaliveTimeMs)],
  );
  const sub = await startClient();
  try {
    const shards = Array.from({ length: streams }, () => [`s${randomUUID()}`]);
    await sub.request(
      { type: 'subscribe', port, connections: shards, connectionsPerSession: perSession },
      'subscribed',
      120_000,
    );
    await waitForSubscriptions(broker, streams);
    await sleep(1000);
    const [s0, c0] = await Promise.all([stats(broker), clientCpu([sub])]);
    await sleep(durationMs);
    const [s1, c1] = await Promise.all([stats(broker), clientCpu([sub])]);
    const cpuUs = cpuOf(s1.cpu) - cpuOf(s0.cpu);
    const seconds = durationMs / 1000;
    console.log(
      '| streams | sessions | measured s | broker CPU ms/s | broker CPU | broker RSS MiB | subscriber CPU ms/s |\n' +
        '|---|---|---|---|---|---|---|\n' +
        `| ${streams} | ${Math.ceil(streams / perSession)} | ${seconds} | ${(cpuUs / 1000 / seconds).toFixed(2)} | ` +
        `${((cpuUs / 1e6 / seconds) * 100).toFixed(2)}% | ${mib(s1.rss)} | ${((c1[0]! - c0[0]!) / 1000 / seconds).toFixed(2)} |`,
    );
  } finally {
    await sub.stop();
    await broker.stop();
  }
}

async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      fanouts: { type: 'string', default: '1,10,100' },
      rates: { type: 'string', default: '50000,100000,200000,300000,400000' },
      'step-ms': { type: 'string' },
      /** A short run: 1 s steps and no RSS-at-scale step (unless the flags say otherwise). */
      quick: { type: 'boolean', default: false },
      shards: { type: 'string' },
      'sub-workers': { type: 'string', default: '1' },
      'skip-rss': { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      server: { type: 'string', default: 'ours' },
      reference: { type: 'boolean', default: false },
      'reference-rate': { type: 'string', default: '1500' },
      'reference-burst-ms': { type: 'string', default: '0' },
      'trace-gc': { type: 'boolean', default: false },
      'heap-prof': { type: 'boolean', default: false },
      'broker-node-flags': { type: 'string', default: '' },
      'client-sched': { type: 'string' },
      'write-window-us': { type: 'string', default: '0' },
      idle: { type: 'boolean', default: false },
      'idle-streams': { type: 'string', default: '2000' },
      'idle-per-session': { type: 'string', default: '1' },
      'idle-keepalive-ms': { type: 'string' },
      'publisher-write-window-us': { type: 'string' },
      /** Broker processes, the shards spread over them by rendezvous hashing (sharded mode). */
      brokers: { type: 'string', default: '1' },
      tokens: { type: 'boolean', default: false },
      'http2-server': { type: 'string' },
      socket: { type: 'string', default: 'tcp' },
    },
  });
  if (values.socket !== 'tcp' && values.socket !== 'unix') {
    throw new UsageError('--socket must be tcp or unix');
  }
  if (values.socket === 'unix') {
    if (values.server === 'grpc-js' || values.server === 'nats' || values.brokers !== '1') {
      throw new UsageError('--socket unix runs one broker of ours or the floor');
    }
    // Inherited by the forked broker and clients; short, as a socket path must be.
    const path = join(tmpdir(), `pp-bench-${process.pid}.sock`);
    process.env.PERSIST_PUBSUB_BENCH_SOCKET = path;
    process.on('exit', () => rmSync(path, { force: true }));
  }
  traceGc = values['trace-gc'];
  heapProf = values['heap-prof'];
  brokerNodeFlags = values['broker-node-flags'].split(',').filter((f) => f !== '');
  const sched = values['client-sched'] ?? DEFAULT_CLIENT_SCHED;
  if (sched !== 'batch' && sched !== 'other') {
    throw new UsageError('--client-sched must be batch or other');
  }
  clientSched = sched;
  // Inherited by the forked broker and clients (broker-server.ts, broker-client.ts).
  if (values.tokens) process.env.PERSIST_PUBSUB_BENCH_TOKEN = 'bench-token';
  const http2Server = values['http2-server'];
  if (http2Server !== undefined) {
    if (http2Server !== 'own' && http2Server !== 'node') {
      throw new UsageError('--http2-server must be own or node');
    }
    process.env.PERSIST_PUBSUB_BENCH_HTTP2_SERVER = http2Server;
  }
  const nats = values.server === 'nats';
  if (values.server === 'grpc-js') serverModule = './broker-grpcjs-server.js';
  else if (values.server === 'floor') serverModule = './broker-floor-server.js';
  else if (values.server !== 'ours' && !nats) {
    throw new UsageError('--server must be ours, grpc-js, floor or nats');
  }
  if (nats && !values.reference) {
    throw new UsageError(
      '--server nats runs with --reference only (bench fanout ladders nats-server)',
    );
  }
  const fanouts = values.fanouts.split(',').map(Number);
  const rates = values.rates.split(',').map(Number);
  const stepMs = Number(values['step-ms'] ?? (values.quick ? '1000' : '3000'));
  const shardCount = Number(values.shards ?? (values.reference ? '1000' : '100'));
  const subWorkers = Number(values['sub-workers']);
  const brokerCount = Number(values.brokers);
  for (const [name, v] of [
    ['step-ms', stepMs],
    ['shards', shardCount],
    ['sub-workers', subWorkers],
    ['brokers', brokerCount],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new UsageError(`--${name} must be a positive integer`);
  }
  if ([...fanouts, ...rates].some((n) => !Number.isInteger(n) || n < 1)) {
    throw new UsageError('--fanouts and --rates must be positive integers');
  }
  if (values.idle) {
    const streams = Number(values['idle-streams']);
    const perSession = Number(values['idle-per-session']);
    const ms = Number(values['step-ms'] ?? (values.quick ? '10000' : '35000'));
    if (![streams, perSession, ms].every((n) => Number.isInteger(n) && n >= 1)) {
      throw new UsageError(
        '--idle-streams, --idle-per-session and --step-ms must be positive integers',
      );
    }
    console.log(
      `server: ours. Idle: ${streams} PubSub streams, ${perSession} per HTTP/2 session, one shard each, ` +
        `default keepalive (30 s), nothing pushed; ${ms} ms measured. CPU % is of one core.\n`,
    );
    const keepalive = values['idle-keepalive-ms'];
    await runIdle(streams, perSession, ms, keepalive === undefined ? undefined : Number(keepalive));
    return;
  }
  if (values.reference) {
    const rate = Number(values['reference-rate']);
    if (!Number.isInteger(rate) || rate < 2) {
      throw new UsageError('--reference-rate must be an integer >= 2');
    }
    const ms = Number(values['step-ms'] ?? (values.quick ? '3000' : '10000'));
    const burstMs = Number(values['reference-burst-ms']);
    if (!Number.isInteger(burstMs) || burstMs < 0 || burstMs > 10_000) {
      throw new UsageError('--reference-burst-ms must be an integer in [0, 10000]');
    }
    const brokerUs = Number(values['write-window-us']);
    const publishersUs = Number(values['publisher-write-window-us'] ?? brokerUs);
    for (const v of [brokerUs, publishersUs]) {
      if (!Number.isInteger(v) || v < 0 || v > 100_000) {
        throw new UsageError(
          '--write-window-us and --publisher-write-window-us must be integers in [0, 100000]',
        );
      }
    }
    if (nats && (brokerUs !== 0 || publishersUs !== 0 || values.tokens || values['cpu-prof'])) {
      throw new UsageError(
        '--server nats takes no --write-window-us, --publisher-write-window-us, --tokens or --cpu-prof',
      );
    }
    const pattern =
      burstMs === 0
        ? 'one push per write, spread evenly'
        : `one push per write, each ${burstMs} ms slot's pushes written at its start in one wake-up`;
    const label = `${values.server}${http2Server === undefined ? '' : ` (HTTP/2 ${http2Server})`}${values.tokens ? ', scoped tokens' : ''}, ${values.socket === 'unix' ? 'Unix socket' : 'loopback TCP'}`;
    console.log(
      `server: ${label}. Reference load: 512 B diffs, ${pattern}, ${ms} ms measured (and as long idle). ` +
        `CPU % is of one core; clients at ${clientSched === 'batch' ? 'SCHED_BATCH' : 'SCHED_OTHER'}. Load average ${loadAverage()}.`,
    );
    await runReference(
      {
        shardCount,
        pushesPerSecond: rate,
        durationMs: ms,
        burstMs,
        nats,
        cpuProf: values['cpu-prof'],
      },
      { brokerUs, publishersUs },
    );
    console.log(`\nload average after: ${loadAverage()}`);
    return;
  }
  console.log(
    `server: ${values.server}${http2Server === undefined ? '' : ` (HTTP/2 ${http2Server})`}. ${DIFF_BYTES} B diffs, ${shardCount} shards, ${stepMs} ms per step, ` +
      (brokerCount === 1
        ? 'broker in its own process (CPU = its own user+system time), '
        : `${brokerCount} sharded broker processes (shards by rendezvous hashing, CPU = theirs summed), `) +
      `${subWorkers} subscriber process(es), ${brokerCount} publisher process(es) at ${clientSched === 'batch' ? 'SCHED_BATCH' : 'SCHED_OTHER'}. Load average ${loadAverage()}.\n`,
  );
  console.log(
    '| fan-out | target diffs/s | delivered diffs/s | delivered | p50 ms | p99 ms | p99.9 ms | max ms | broker CPU-s per 1M | broker CPU | broker flushes ≤ 1 ms | broker loop stall max ms | broker scavenges / mark-compacts | broker longest GC pause ms | longest tick gap: wall / on CPU / run queue / GC ms | broker longest run on CPU / GC in it ms | broker main thread run queue ms/s / preempted /s | subscriber longest run on CPU / longest tick gap ms | drops | publisher CPU | subscribers CPU |',
  );
  console.log(
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const f of fanouts) {
    await runFanout(f, rates, stepMs, shardCount, subWorkers, values['cpu-prof'], brokerCount);
  }
  console.log(`\nload average after: ${loadAverage()}`);
  if (!values['skip-rss'] && !values.quick) await rssAtScale(values['cpu-prof']);
}
