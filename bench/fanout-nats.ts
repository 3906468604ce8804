/**
 * `npm run bench -- fanout [--quick] [--fanouts 1,10,100] [--shards 100] [--step-ms 2000]
 *   [--start-rate 20000] [--max-rate 3000000] [--p99-bound-ms 10] [--systems ours,nats]
 *   [--cpu-prof] [--client-sched batch|other] [--stall-monitor]`
 *
 * Fan-out against nats-server, in one run on this machine: the same workload (256 B messages
 * round-robin over 100 shards/subjects, each shard followed by exactly F subscribers, every
 * subscriber its own TCP connection; one publisher process, one subscriber process, the server
 * in its own process) through our broker (`broker-server.ts`, lean HTTP/2 clients of
 * `broker-client.ts`) and through nats-server core pub/sub (started here on a free port; lean
 * NATS protocol clients of `fanout-nats-client.ts`). For each system and fan-out the offered
 * rate (deliveries/s) steps up ×√2 until a step fails the bound: delivered ≥ 99 % within 2 s
 * of the end of the step and p99 latency (publisher write → subscriber read) < 10 ms (the first
 * failing step of a ladder is tried once more before the ladder ends). The
 * figure is the delivered msgs/s of the highest passing step, and the ratio ours / NATS. Each step
 * also reports the bench's own publisher and subscriber CPU (% of one core, from `/proc`), so a
 * limit of the clients is not taken for one of the server. Both servers run bare: our broker
 * without the event-loop monitors it runs in `bench broker` (the 1 ms loop-delay histogram and
 * `tick-stalls.ts`, ~40 ms of CPU a second, measured: 0.2–0.3 CPU-s per million deliveries at
 * 160k/s, 2 at 20k/s, which nats-server does not pay). `--stall-monitor` turns them on in our
 * broker and our bench subscriber (the broker's loop stall and longest run on a CPU and the
 * subscriber's, to tell a tail apart as either's; its CPU then includes the monitor's).
 * Both systems' publisher and subscriber processes run at the default scheduling policy
 * (`--client-sched batch`: SCHED_BATCH, a woken client never preempts the server, but its own
 * wake-up then waits and counts in the latency: `DEFAULT_CLIENT_SCHED` in `e2e-child.ts`).
 * Results: `bench/results/fanout.json` (`quick/` with `--quick`), and the report.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';
import {
  type ClientSched,
  DEFAULT_CLIENT_SCHED,
  forkChild,
  loadAverage,
  newHistogram,
  procCpuSeconds,
  setProcessSched,
  sleep,
} from './e2e-child.js';
import { startNatsServer } from './nats-server.js';
import { type BenchRun, writeResult } from './report.js';
import type { TickStalls } from './tick-stalls.js';

export const fanoutBench = {
  description:
    'fan-out against nats-server: delivered msgs/s at p99 < 10 ms, fan-out 1/10/100, ours vs NATS core pub/sub',
  run,
};

const MESSAGE_BYTES = 256;

export type FanoutSystem = 'ours' | 'nats';

export interface FanoutStep {
  system: FanoutSystem;
  fanout: number;
  offeredPerSecond: number;
  deliveredPerSecond: number;
  deliveredRatio: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** The server's CPU-seconds per million deliveries. */
  serverCpuSecondsPerMillion: number;
  serverCpuPercent: number;
  /** Our broker's longest event-loop stall during the step (ms); null for nats-server. */
  serverLoopStallMaxMs: number | null;
  /**
   * Our broker's longest run on a CPU between two 1 ms ticks (its own stall, whatever the
   * machine's load did to the gaps), ms; null for nats-server. Absent in older results.
   */
  serverBusyMaxMs?: number | null;
  /**
   * The bench subscriber's own longest run on a CPU between two 1 ms ticks, ms (our clients
   * only; null for NATS's): a tail that is the subscriber's, not the server's. Absent in older
   * results.
   */
  subscriberBusyMaxMs?: number | null;
  disconnects: number;
  /**
   * The bench's own publisher and subscriber processes during the step, % of one core (all
   * threads, from `/proc`): they must not be what limits either system. Absent in older results.
   */
  publisherCpuPercent?: number;
  subscriberCpuPercent?: number;
  pass: boolean;
}

export interface FanoutBest {
  system: FanoutSystem;
  fanout: number;
  /** Delivered msgs/s of the highest passing step (0 if none passed). */
  deliveredPerSecond: number;
  p99Ms: number | null;
  /** True when the highest step offered passed (the limit is above the ladder's top). */
  capped: boolean;
}

export interface FanoutResult extends BenchRun {
  kind: 'fanout';
  config: {
    messageBytes: number;
    shards: number;
    stepMs: number;
    p99BoundMs: number;
    minDeliveredRatio: number;
    natsServer: string;
    /** Both systems' publisher and subscriber scheduling (`--client-sched`); absent in older results (`other`). */
    clientSched?: ClientSched;
    /** `--stall-monitor`: our broker's CPU includes its loop monitors. Absent before session 7: on. */
    stallMonitor?: boolean;
  };
  steps: FanoutStep[];
  best: FanoutBest[];
  /** ours / NATS delivered msgs/s at the bound, per fan-out. */
  ratios: { fanout: number; ratio: number | null }[];
}

const MIN_DELIVERED = 0.99;

/** Connection j of n subscribes to shard i iff (i + j) mod n < fanout (as `broker.ts`). */
function layout(shards: string[], fanout: number, connections: number): string[][] {
  const out: string[][] = Array.from({ length: connections }, () => []);
  shards.forEach((s, i) => {
    for (let k = 0; k < fanout; k++) out[(i + k) % connections]!.push(s);
  });
  return out;
}

interface Server {
  port: number;
  cpuSeconds(): Promise<number>;
  /** The longest event-loop stall since the previous call, in ms (our broker only). */
  loopStallMs?(): number | undefined;
  /** The longest run on a CPU since the previous call, in ms (our broker only). */
  busyMs?(): number | undefined;
  subscriptions?(): Promise<number>;
  stop(): Promise<void>;
}

async function startOurs(cpuProf: string | undefined, stallMonitor: boolean): Promise<Server> {
  const broker = forkChild(
    './broker-server.js',
    stallMonitor ? ['--loop-resolution-ms', '1'] : [],
    { cpuProf },
  );
  const { port } = await broker.next<{ port: number }>('ready');
  let stall: number | undefined;
  let busy: number | undefined;
  const stats = async () => {
    const s = await broker.request<{
      cpu: { user: number; system: number };
      subscriptions: number;
      loopDelayMs?: { max: number };
      stall?: TickStalls;
    }>({ type: 'stats' }, 'stats');
    stall = s.loopDelayMs?.max;
    busy = s.stall?.busyMs;
    return s;
  };
  return {
    port,
    cpuSeconds: async () => {
      const s = await stats();
      return (s.cpu.user + s.cpu.system) / 1e6;
    },
    loopStallMs: () => stall,
    busyMs: () => busy,
    subscriptions: async () => (await stats()).subscriptions,
    stop: () => broker.stop(),
  };
}

async function startNats(): Promise<Server & { version: string }> {
  const nats = await startNatsServer();
  return { ...nats, cpuSeconds: async () => procCpuSeconds(nats.pid) ?? 0 };
}

interface Report {
  received: number;
  histogram: string;
  disconnects?: number;
  /** Our bench subscriber's own stalls since `reset` (`broker-client.ts`). */
  stall?: TickStalls;
}

async function runSystem(
  system: FanoutSystem,
  fanout: number,
  o: {
    shards: number;
    stepMs: number;
    startRate: number;
    maxRate: number;
    p99BoundMs: number;
    clientSched: ClientSched;
    stallMonitor: boolean;
  },
  cpuProf: string | undefined,
): Promise<FanoutStep[]> {
  const server = system === 'ours' ? await startOurs(cpuProf, o.stallMonitor) : await startNats();
  const clientModule = system === 'ours' ? './broker-client.js' : './fanout-nats-client.js';
  const sub = forkChild(clientModule);
  const pub = forkChild(clientModule);
  const steps: FanoutStep[] = [];
  try {
    await Promise.all([sub.next('ready'), pub.next('ready')]);
    // Both systems' load generators at one policy (`DEFAULT_CLIENT_SCHED`).
    for (const c of [sub, pub]) setProcessSched(c.proc.pid ?? 0, o.clientSched);
    const shards = Array.from({ length: o.shards }, () => `s${randomUUID()}`);
    const connections = Math.max(fanout, 10);
    await sub.request(
      {
        type: 'subscribe',
        port: server.port,
        connections: layout(shards, fanout, connections),
        connectionsPerSession: 1,
        trackStalls: o.stallMonitor,
      },
      'subscribed',
      120_000,
    );
    if (server.subscriptions !== undefined) {
      const deadline = Date.now() + 60_000;
      while ((await server.subscriptions()) < o.shards * fanout) {
        if (Date.now() > deadline) throw new Error(`${system}: subscriptions not all active`);
        await sleep(50);
      }
    }
    const publish = (pushesPerSecond: number, durationMs: number) =>
      pub.request<{ sent: number }>(
        {
          type: 'publish',
          port: server.port,
          shards,
          pushesPerSecond,
          durationMs,
          diffBytes: MESSAGE_BYTES,
        },
        'published',
        durationMs + 60_000,
      );
    const report = () => sub.request<Report>({ type: 'report' }, 'report');
    // Warm up the JIT on every side.
    await sub.request({ type: 'reset' }, 'reset');
    await publish(Math.min(20_000, 50_000 / fanout), 1000);
    await sleep(500);
    let retried = false;
    for (let target = o.startRate; target <= o.maxRate; target *= Math.SQRT2) {
      // Whole pushes per second and whole-second steps: `broker-client.ts` paces up to
      // round(rate × duration) and would never reach a fractional total.
      const pushesPerSecond = Math.max(1, Math.round(target / fanout));
      const rate = pushesPerSecond * fanout;
      await sub.request({ type: 'reset' }, 'reset');
      const cpu0 = await server.cpuSeconds();
      const clients0 = [pub, sub].map((c) => procCpuSeconds(c.proc.pid ?? 0) ?? 0);
      const { sent } = await publish(pushesPerSecond, o.stepMs);
      const expected = sent * fanout;
      let r = await report();
      const settle = Date.now() + 2000;
      while (r.received < expected && Date.now() < settle) {
        await sleep(50);
        r = await report();
      }
      const cpu1 = await server.cpuSeconds();
      const clientPct = (i: number, c: typeof pub) =>
        Math.round(
          (((procCpuSeconds(c.proc.pid ?? 0) ?? 0) - clients0[i]!) / (o.stepMs / 1000)) * 100,
        );
      const publisherCpuPercent = clientPct(0, pub);
      const subscriberCpuPercent = clientPct(1, sub);
      const h = newHistogram();
      h.add(hdr.decodeFromCompressedBase64(r.histogram));
      const ms = (us: number) => Math.round(us) / 1000;
      const deliveredRatio = expected === 0 ? 0 : r.received / expected;
      const step: FanoutStep = {
        system,
        fanout,
        offeredPerSecond: rate,
        deliveredPerSecond: Math.round(r.received / (o.stepMs / 1000)),
        deliveredRatio: Math.round(deliveredRatio * 10_000) / 10_000,
        p50Ms: ms(h.getValueAtPercentile(50)),
        p99Ms: ms(h.getValueAtPercentile(99)),
        p999Ms: ms(h.getValueAtPercentile(99.9)),
        maxMs: ms(h.maxValue),
        serverCpuSecondsPerMillion:
          r.received === 0 ? 0 : Math.round(((cpu1 - cpu0) / (r.received / 1e6)) * 100) / 100,
        serverCpuPercent: Math.round(((cpu1 - cpu0) / (o.stepMs / 1000)) * 100),
        serverLoopStallMaxMs:
          server.loopStallMs?.() === undefined ? null : Math.round(server.loopStallMs()! * 10) / 10,
        serverBusyMaxMs:
          server.busyMs?.() === undefined ? null : Math.round(server.busyMs()! * 10) / 10,
        subscriberBusyMaxMs: r.stall === undefined ? null : Math.round(r.stall.busyMs * 10) / 10,
        disconnects: r.disconnects ?? 0,
        publisherCpuPercent,
        subscriberCpuPercent,
        pass: false,
      };
      step.pass =
        deliveredRatio >= MIN_DELIVERED && step.p99Ms < o.p99BoundMs && step.disconnects === 0;
      steps.push(step);
      printStep(step);
      await sleep(300);
      if (!step.pass) {
        // One retry per ladder, so a single scheduling hiccup of a loaded host does not end it.
        if (retried) break;
        retried = true;
        target /= Math.SQRT2;
      }
    }
  } finally {
    await pub.stop();
    await sub.stop();
    await server.stop();
  }
  return steps;
}

function printStep(s: FanoutStep): void {
  console.log(
    `| ${s.system} | ${s.fanout} | ${s.offeredPerSecond} | ${s.deliveredPerSecond} | ${(s.deliveredRatio * 100).toFixed(1)}% | ${s.p50Ms} | ${s.p99Ms} | ${s.p999Ms} | ${s.maxMs} | ${s.serverCpuSecondsPerMillion} | ${s.serverCpuPercent}% | ${s.serverLoopStallMaxMs ?? '–'} | ${s.serverBusyMaxMs ?? '–'} | ${s.subscriberBusyMaxMs ?? '–'} | ${s.publisherCpuPercent ?? '–'}% | ${s.subscriberCpuPercent ?? '–'}% | ${s.pass ? 'pass' : 'FAIL'} |`,
  );
}

async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      fanouts: { type: 'string', default: '1,10,100' },
      shards: { type: 'string', default: '100' },
      'step-ms': { type: 'string' },
      'start-rate': { type: 'string' },
      'max-rate': { type: 'string', default: '3000000' },
      'p99-bound-ms': { type: 'string', default: '10' },
      systems: { type: 'string', default: 'ours,nats' },
      'cpu-prof': { type: 'boolean', default: false },
      'client-sched': { type: 'string', default: DEFAULT_CLIENT_SCHED },
      'stall-monitor': { type: 'boolean', default: false },
    },
  });
  const quick = values.quick;
  const clientSched = values['client-sched'];
  if (clientSched !== 'batch' && clientSched !== 'other') {
    throw new Error('--client-sched must be batch or other');
  }
  const o = {
    shards: Number(values.shards),
    stepMs: Number(values['step-ms'] ?? (quick ? 1000 : 2000)),
    startRate: Number(values['start-rate'] ?? (quick ? 40_000 : 20_000)),
    maxRate: Number(values['max-rate']),
    p99BoundMs: Number(values['p99-bound-ms']),
  };
  const fanouts = values.fanouts.split(',').map(Number);
  for (const [name, v] of Object.entries(o)) {
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  }
  if (o.stepMs % 1000 !== 0) throw new Error('--step-ms must be a whole number of seconds');
  if (fanouts.some((f) => !Number.isInteger(f) || f < 1)) {
    throw new Error('--fanouts must be positive integers');
  }
  const systems = values.systems.split(',') as FanoutSystem[];
  if (systems.some((s) => s !== 'ours' && s !== 'nats')) {
    throw new Error('--systems: ours and/or nats');
  }
  const cpuProf = values['cpu-prof'] ? '.tmp/cpu-prof' : undefined;
  const startedAt = new Date().toISOString();
  const loadBefore = loadAverage();
  let natsVersion = 'not run';
  if (systems.includes('nats')) {
    const probe = await startNats();
    natsVersion = probe.version;
    await probe.stop();
  }
  console.log(
    `${MESSAGE_BYTES} B messages over ${o.shards} shards/subjects, every subscriber its own TCP connection, 1 publisher + 1 subscriber process; ` +
      `steps of ${o.stepMs} ms, ×√2 from ${o.startRate}/s; bound: ≥ ${MIN_DELIVERED * 100}% delivered and p99 < ${o.p99BoundMs} ms. ` +
      `nats-server ${natsVersion}; both systems' publisher and subscriber processes at scheduling policy ${clientSched === 'batch' ? 'SCHED_BATCH' : 'SCHED_OTHER'}, the server at SCHED_OTHER. Load average ${loadBefore}.\n`,
  );
  console.log(
    '| system | fan-out | offered msgs/s | delivered msgs/s | delivered | p50 ms | p99 ms | p99.9 ms | max ms | server CPU-s per 1M | server CPU | broker loop stall max ms | broker longest run on CPU ms | subscriber longest run on CPU ms | publisher CPU | subscriber CPU | bound |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  const steps: FanoutStep[] = [];
  const best: FanoutBest[] = [];
  for (const f of fanouts) {
    for (const s of systems) {
      const st = await runSystem(
        s,
        f,
        { ...o, clientSched, stallMonitor: values['stall-monitor'] },
        cpuProf,
      );
      steps.push(...st);
      const passed = st.filter((x) => x.pass);
      const top = passed.reduce<FanoutStep | undefined>(
        (a, x) => (a === undefined || x.deliveredPerSecond > a.deliveredPerSecond ? x : a),
        undefined,
      );
      best.push({
        system: s,
        fanout: f,
        deliveredPerSecond: top?.deliveredPerSecond ?? 0,
        p99Ms: top?.p99Ms ?? null,
        capped: st.length > 0 && st.at(-1)?.pass === true,
      });
    }
  }
  const ratios = fanouts.map((f) => {
    const ours = best.find((b) => b.system === 'ours' && b.fanout === f);
    const nats = best.find((b) => b.system === 'nats' && b.fanout === f);
    return {
      fanout: f,
      ratio:
        ours === undefined || nats === undefined || nats.deliveredPerSecond === 0
          ? null
          : Math.round((ours.deliveredPerSecond / nats.deliveredPerSecond) * 100) / 100,
    };
  });
  console.log(
    '\n| fan-out | ours msgs/s at bound | NATS msgs/s at bound | ours / NATS |\n|---|---|---|---|',
  );
  for (const r of ratios) {
    const ours = best.find((b) => b.system === 'ours' && b.fanout === r.fanout);
    const nats = best.find((b) => b.system === 'nats' && b.fanout === r.fanout);
    console.log(
      `| ${r.fanout} | ${ours?.deliveredPerSecond ?? '–'} | ${nats?.deliveredPerSecond ?? '–'} | ${r.ratio ?? '–'} |`,
    );
  }
  const result: FanoutResult = {
    kind: 'fanout',
    startedAt,
    quick,
    loadAverageBefore: loadBefore,
    loadAverageAfter: loadAverage(),
    host: undefined,
    config: {
      messageBytes: MESSAGE_BYTES,
      shards: o.shards,
      stepMs: o.stepMs,
      p99BoundMs: o.p99BoundMs,
      minDeliveredRatio: MIN_DELIVERED,
      natsServer: natsVersion,
      clientSched,
      stallMonitor: values['stall-monitor'],
    },
    steps,
    best,
    ratios,
  };
  const file = await writeResult(result);
  console.log(`\nload average after: ${result.loadAverageAfter}. Results: ${file}`);
}
