/**
 * The broker under benchmark, as a child process (forked by `bench/broker.ts` with an IPC
 * channel): starts `createBroker()` on a free loopback port and answers `stats` requests with
 * its own CPU time, RSS and subscription count, so the figures are the broker's alone.
 * Options: `--default-keepalive` (the broker's default keepalive instead of none),
 * `--keepalive-time-ms N` (that keepalive instead),
 * `--loop-resolution-ms N` (report the event-loop delay, sampled every N ms), `--write-window-us N`
 * (the broker's write window, `BrokerOptions.writeWindowUs`). With
 * `PERSIST_PUBSUB_BENCH_TOKEN` set (`bench broker --tokens`), the broker has one scoped token of
 * that value among 100 others, with prefix patterns (its shards `s…` match the last one), so
 * every push and subscribe goes through the authorization check. `PERSIST_PUBSUB_BENCH_HTTP2_SERVER`
 * (`bench broker --http2-server`) picks the broker's HTTP/2 server. With `--bridge nats://HOST:PORT` (the e2e benchmark's bridged mode) it is an edge bridged
 * through NATS, like `persist-pubsub broker --bridge`, and reports ready once the bridge is up.
 * Each `stats` reply carries the GC pauses since the previous one (scavenges, mark-compacts, the
 * longest pause) and, with `--loop-resolution-ms`, the longest gap between two 1 ms ticks with the
 * main thread's time on a CPU and in the run queue inside it, and the GC pauses inside it, and the
 * most time on a CPU between two ticks (the broker's own longest uninterrupted run) with the GC
 * pauses inside that one (`tick-stalls.ts`); `heap-prof-start` / `heap-prof-stop` sample every allocation in between
 * (collected ones included) into a `.heapprofile` for `report-profile.js`.
 * `--stall-log` (the e2e benchmark's): keeps its own event-loop stalls and GC pauses
 * (`stall-log.ts`) and answers `stall-log` requests with them.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { createBroker, createNatsBridge, isUnixSocketAddress } from '../src/broker/index.js';
import { startStallLog } from './stall-log.js';
import { startTickStalls } from './tick-stalls.js';

type Request =
  | { type: 'stats' }
  | { type: 'heap-prof-start' }
  | { type: 'heap-prof-stop'; file: string }
  | { type: 'stall-log' }
  | { type: 'exit' };

/** The GC pauses since the previous stats request (`perf_hooks` 'gc' entries). */
interface GcTally {
  scavenges: number;
  markCompacts: number;
  /** Sum and longest of the pauses, ms. */
  pauseMs: number;
  maxPauseMs: number;
}
/** `bench broker --socket unix`: the Unix socket every process of the run uses (else TCP). */
const BENCH_SOCKET = process.env.PERSIST_PUBSUB_BENCH_SOCKET;
const newTally = (): GcTally => ({ scavenges: 0, markCompacts: 0, pauseMs: 0, maxPauseMs: 0 });

async function main(): Promise<void> {
  const bridgeAt = process.argv.indexOf('--bridge');
  const bridgeUrl = bridgeAt >= 0 ? process.argv[bridgeAt + 1] : undefined;
  if (bridgeAt >= 0 && bridgeUrl === undefined) throw new Error('--bridge needs a nats:// URL');
  const bridge = bridgeUrl === undefined ? undefined : createNatsBridge({ url: bridgeUrl });
  const keepaliveAt = process.argv.indexOf('--keepalive-time-ms');
  const windowAt = process.argv.indexOf('--write-window-us');
  const writeWindowUs = windowAt < 0 ? 0 : Number(process.argv[windowAt + 1]);
  const token = process.env.PERSIST_PUBSUB_BENCH_TOKEN;
  const patterns = [...Array.from({ length: 20 }, (_, i) => `tenant-${i}/*`), 's*'];
  const tokens =
    token === undefined
      ? undefined
      : [
          ...Array.from({ length: 100 }, (_, i) => ({
            name: `other-${i}`,
            token: `other-token-${i}`,
            publish: patterns.slice(0, -1),
            subscribe: patterns.slice(0, -1),
          })),
          { name: 'bench', token, publish: patterns, subscribe: patterns },
        ];
  const http2Server = process.env.PERSIST_PUBSUB_BENCH_HTTP2_SERVER;
  const broker = createBroker({
    ...(http2Server === 'own' || http2Server === 'node' ? { http2Server } : {}),
    writeWindowUs,
    tokens,
    observer: bridge?.observer,
    // `bench broker --socket unix`: a Unix socket instead of loopback TCP.
    listen: BENCH_SOCKET === undefined ? { host: '127.0.0.1', port: 0 } : { path: BENCH_SOCKET },
    // The default keepalive with `--default-keepalive` (idle CPU is part of the figure).
    ...(process.argv.includes('--default-keepalive') ? {} : { keepaliveTimeMs: 0 }),
    ...(keepaliveAt < 0 ? {} : { keepaliveTimeMs: Number(process.argv[keepaliveAt + 1]) }),
    limits: { maxConnections: 100_000, maxQueueMessages: 4096, maxQueueBytes: 64 * 1024 * 1024 },
  });
  await broker.start();
  await bridge?.start(broker, { signal: AbortSignal.timeout(15_000) });
  // The event-loop delay monitor is a native timer: at 1 ms resolution it costs ~22 ms of CPU
  // per second (measured: 7 µs per delivery at the e2e reference load's 3,000 deliveries/s),
  // so it runs only where the stall is the figure (`--loop-resolution-ms N`).
  const resolutionAt = process.argv.indexOf('--loop-resolution-ms');
  const loopDelay =
    resolutionAt < 0
      ? undefined
      : monitorEventLoopDelay({ resolution: Number(process.argv[resolutionAt + 1]) });
  loopDelay?.enable();
  // GC pauses per step: is a stall a collection, and which kind?
  let gc = newTally();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gc.scavenges++;
      else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.markCompacts++;
      gc.pauseMs += e.duration;
      gc.maxPauseMs = Math.max(gc.maxPauseMs, e.duration);
    }
  }).observe({ entryTypes: ['gc'] });
  // With the loop monitor: the worst stall per step, on a CPU or descheduled (`tick-stalls.ts`).
  const stalls = loopDelay === undefined ? undefined : startTickStalls(1);
  // `bench broker --heap-prof`: every allocation sampled over a step, also those collected since.
  let heapSession: Session | undefined;
  const stallLog = process.argv.includes('--stall-log')
    ? startStallLog({ name: 'broker' })
    : undefined;
  const send = (m: unknown) => process.send?.(m);
  process.on('message', async (m: Request) => {
    if (m.type === 'stats') {
      const text = await broker.registry.getSingleMetricAsString(
        'persist_pubsub_server_subscriptions',
      );
      const subs = Number(/persist_pubsub_server_subscriptions (\d+)/.exec(text)?.[1] ?? 0);
      const drops = await broker.registry.getSingleMetricAsString(
        'persist_pubsub_server_dropped_diffs_total',
      );
      const dropped = [...drops.matchAll(/ (\d+)$/gm)].reduce((a, x) => a + Number(x[1]), 0);
      const fanout = await broker.registry.getSingleMetricAsString(
        'persist_pubsub_server_fanout_latency_seconds',
      );
      send({
        type: 'stats',
        fanoutLatencyBuckets: fanout,
        loopDelayMs:
          loopDelay === undefined
            ? undefined
            : {
                p50: loopDelay.percentile(50) / 1e6,
                p99: loopDelay.percentile(99) / 1e6,
                max: loopDelay.max / 1e6,
              },
        cpu: process.cpuUsage(),
        rss: process.memoryUsage().rss,
        heapUsed: process.memoryUsage().heapUsed,
        subscriptions: subs,
        connections: broker.listConnections({ pageSize: 1 }).items.length > 0,
        dropped,
        gc,
        stall: stalls?.read(),
      });
      loopDelay?.reset();
      gc = newTally();
      stalls?.reset();
    } else if (m.type === 'heap-prof-start') {
      heapSession = new Session();
      heapSession.connect();
      await heapSession.post('HeapProfiler.enable');
      await heapSession.post('HeapProfiler.startSampling', {
        samplingInterval: 1024,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
      send({ type: 'heap-prof-started' });
    } else if (m.type === 'heap-prof-stop') {
      const { profile } = (await heapSession?.post('HeapProfiler.stopSampling')) ?? {};
      heapSession?.disconnect();
      heapSession = undefined;
      mkdirSync('.tmp/heap-prof', { recursive: true });
      writeFileSync(m.file, JSON.stringify(profile));
      send({ type: 'heap-prof-stopped' });
    } else if (m.type === 'stall-log') {
      send({ type: 'stall-log', log: stallLog?.log() ?? null });
    } else if (m.type === 'exit') {
      stallLog?.stop();
      await bridge?.close();
      await broker.close({ deadlineMs: 200 });
      process.exit(0);
    }
  });
  send({ type: 'ready', port: isUnixSocketAddress(broker.address) ? 0 : broker.address.port });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
