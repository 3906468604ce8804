#!/usr/bin/env node
// Soak: the broker CLI in its own process; writers and readers (createPersistClient, one gRPC
// connection each) on many shards of one in-memory Consensus in this process, paced to a
// target update rate. Samples RSS (broker and this process) over time; at the end checks that
// every reader is at every shard's final head, that no MaxListenersExceededWarning or other
// process warning/unhandled error happened, and that closing every client returns the active
// handles to the baseline (no leak).
//   npm run build && node --expose-gc scripts/soak.mjs [--duration-s 600] [--rate 20000] [--shards 256]
//                                          [--readers 2] [--sample-s 10]
// Prints one JSON line per sample and a final JSON summary; exits 1 if a check fails.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as netModule from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { createFlags, createMemoryConsensus, createPersistClient } = await import(
  join(root, 'dist', 'src', 'index.js')
);

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const num = (name, dflt) => {
  const v = args[name] === undefined ? dflt : Number(args[name]);
  if (!Number.isFinite(v) || v <= 0) {
    console.error(`--${name} must be a positive number`);
    process.exit(2);
  }
  return v;
};
const durationS = num('duration-s', 600);
const rate = num('rate', 20_000);
const shards = Math.floor(num('shards', 256));
const readers = Math.floor(num('readers', 2));
const sampleS = num('sample-s', 10);

const problems = [];
process.on('warning', (w) => problems.push(`warning: ${w.name}: ${w.message}`));
process.on('unhandledRejection', (e) => problems.push(`unhandledRejection: ${e}`));
process.on('uncaughtException', (e) => problems.push(`uncaughtException: ${e}`));

const enc = new TextEncoder();
const dec = new TextDecoder();
/** The soak model: a counter per shard; a diff is the next value. */
const model = {
  name: 'soak-counter.v1',
  initial: () => 0,
  apply: (s, d) => {
    if (d !== s + 1) throw new Error(`diff ${d} does not follow ${s}`);
    return d;
  },
  diff: (_a, b) => b,
  isEmptyDiff: () => false,
  equals: (a, b) => a === b,
  encodeState: (s) => enc.encode(String(s)),
  decodeState: (b) => Number(dec.decode(b)),
  encodeDiff: (d) => enc.encode(String(d)),
  decodeDiff: (b) => Number(dec.decode(b)),
};

const rssMiB = (pid) => {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
};
const handles = () => {
  const byType = {};
  for (const t of process.getActiveResourcesInfo()) byType[t] = (byType[t] ?? 0) + 1;
  return byType;
};
const total = (h) => Object.values(h).reduce((a, b) => a + b, 0);

const port = await new Promise((resolve) => {
  const s = netModule.createServer();
  s.listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const broker = spawn(
  process.execPath,
  [
    join(root, 'dist', 'src', 'cli', 'main.js'),
    'broker',
    '--listen',
    `127.0.0.1:${port}`,
    '--admin-listen',
    '127.0.0.1:0',
    '--log-format',
    'json',
    '--log-level',
    'warn',
  ],
  { stdio: ['ignore', 'ignore', 'pipe'] },
);
let brokerStderr = '';
broker.stderr.on('data', (d) => {
  brokerStderr += d;
});
const brokerExit = new Promise((r) => broker.on('exit', (code, sig) => r(code ?? sig)));
for (let i = 0; ; i++) {
  const ok = await new Promise((r) => {
    const s = netModule.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      r(true);
    });
    s.once('error', () => r(false));
  });
  if (ok) break;
  if (i > 300) throw new Error('the broker did not come up');
  await new Promise((r) => setTimeout(r, 100));
}

const baselineHandles = handles();
const consensus = createMemoryConsensus();
const flags = () =>
  createFlags({
    persist_pubsub_client_sender_channel_size: 100_000,
    persist_pubsub_client_receiver_channel_size: 100_000,
  });
const url = `grpc://127.0.0.1:${port}`;
const writer = await createPersistClient({
  consensus,
  pubsub: url,
  callerId: 'soak-writer',
  config: flags(),
});
const readerClients = [];
for (let r = 0; r < readers; r++) {
  readerClients.push(
    await createPersistClient({
      consensus,
      pubsub: url,
      callerId: `soak-reader-${r}`,
      config: flags(),
    }),
  );
}
const ids = Array.from(
  { length: shards },
  (_, i) => `s00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
);
const wh = await Promise.all(ids.map((id) => writer.openShard(id, model)));
const rh = [];
for (const c of readerClients) rh.push(await Promise.all(ids.map((id) => c.openShard(id, model))));
while ([writer, ...readerClients].some((c) => c.pubsub.status.state !== 'connected')) {
  await new Promise((r) => setTimeout(r, 20));
}
const afterSetupHandles = handles();

// Pacing: every tick, start up to rate*tick updates round-robin, one in flight per shard.
const busy = new Array(shards).fill(false);
let committed = 0;
let skipped = 0;
let next = 0;
const tickMs = 10;
const t0 = performance.now();
const samples = [];
const sample = () => {
  // With `node --expose-gc`, heapUsed after a full GC is what is retained (a leak shows here).
  globalThis.gc?.();
  const s = {
    t: Math.round((performance.now() - t0) / 1000),
    committed,
    ratePerS: Math.round(committed / ((performance.now() - t0) / 1000)),
    brokerRssMiB: rssMiB(broker.pid),
    driverRssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
    driverHeapMiB: Math.round(process.memoryUsage().heapUsed / 2 ** 20),
    handles: total(handles()),
    // How far the slowest reader is behind the writer, in versions, over all shards.
    maxReaderLag: Math.max(
      0,
      ...rh.flatMap((hs) => hs.map((h, i) => Number(wh[i].seqno - h.seqno))),
    ),
  };
  samples.push(s);
  console.log(JSON.stringify(s));
};
const sampler = setInterval(sample, sampleS * 1000);
sample();
let credit = 0;
await new Promise((resolve) => {
  const tick = setInterval(() => {
    if (performance.now() - t0 >= durationS * 1000) {
      clearInterval(tick);
      resolve();
      return;
    }
    credit = Math.min(credit + (rate * tickMs) / 1000, rate); // at most 1 s of backlog
    for (let k = 0; k < shards && credit >= 1; k++) {
      const i = next;
      next = (next + 1) % shards;
      if (busy[i]) {
        skipped++;
        continue;
      }
      busy[i] = true;
      credit--;
      wh[i]
        .update((s) => s + 1)
        .then(() => {
          committed++;
        })
        .catch((e) => problems.push(`update failed: ${e}`))
        .finally(() => {
          busy[i] = false;
        });
    }
  }, tickMs);
});
while (busy.some(Boolean)) await new Promise((r) => setTimeout(r, 5));
clearInterval(sampler);
sample();
const elapsedS = (performance.now() - t0) / 1000;

// Every reader at every shard's final head, within a bound.
const headsAt = performance.now();
const heads = await Promise.all(ids.map(async (id) => (await consensus.head(id))?.seqno ?? 0n));
// Readers may hold a backlog when the writers outran them: wait while they make progress,
// and fail if none moves for 15 s or the catch-up exceeds 5 minutes.
let behind = [];
let lastProgressAt = performance.now();
let lastSum = -1n;
for (;;) {
  behind = [];
  let sum = 0n;
  for (const hs of rh) for (const h of hs) sum += h.seqno;
  if (sum !== lastSum) {
    lastSum = sum;
    lastProgressAt = performance.now();
  }
  for (const [r, hs] of rh.entries()) {
    for (const [s, h] of hs.entries()) {
      if (h.seqno < heads[s]) behind.push(`r${r}/${s}@${h.seqno}<${heads[s]}`);
    }
  }
  if (behind.length === 0) break;
  if (performance.now() - lastProgressAt > 15_000 || performance.now() - headsAt > 300_000) break;
  await new Promise((r) => setTimeout(r, 100));
}
const catchUpMs = Math.round(performance.now() - headsAt);
// What each client saw, for diagnosis: connection status and the counters that explain a lag.
const WATCH =
  /^persist_pubsub_(client_(connections_established|receive_lagged|errors|call_received|pushes_dropped|catch_up_fetches)_total|state_(diff_stale|diff_out_of_order|diff_invalid|consensus_reads|read_errors)_total)/;
const clientReport = async (c) => {
  const counts = {};
  for (const line of (await c.registry.metrics()).split('\n')) {
    if (!WATCH.test(line)) continue;
    const name = line
      .slice(0, line.lastIndexOf(' '))
      .replace(/^persist_pubsub_/, '')
      .replace(/,?shard="[^"]*"/, '');
    counts[name] = (counts[name] ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return { status: c.pubsub.status.state, ...counts };
};
const clients = {
  writer: await clientReport(writer),
  readers: await Promise.all(readerClients.map(clientReport)),
};
const stateOk = rh.every((hs) => hs.every((h, s) => h.state === Number(heads[s])));

for (const h of wh) h.close();
for (const hs of rh) for (const h of hs) h.close();
await writer.close();
for (const c of readerClients) await c.close();
await new Promise((r) => setTimeout(r, 500));
const endHandles = handles();
broker.kill('SIGTERM');
const brokerCode = await brokerExit;

const summary = {
  durationS: Math.round(elapsedS),
  targetRate: rate,
  achievedRate: Math.round(committed / elapsedS),
  committed,
  skippedBusy: skipped,
  shards,
  readers,
  rssMiB: {
    brokerStart: samples[0]?.brokerRssMiB,
    brokerEnd: samples.at(-1)?.brokerRssMiB,
    brokerMax: Math.max(...samples.map((s) => s.brokerRssMiB ?? 0)),
    driverStart: samples[0]?.driverRssMiB,
    driverEnd: samples.at(-1)?.driverRssMiB,
  },
  handles: { baseline: baselineHandles, afterSetup: afterSetupHandles, afterClose: endHandles },
  readersAtHead: behind.length === 0,
  readersStateOk: stateOk,
  catchUpMs,
  behind: behind.slice(0, 5),
  clients,
  brokerExit: brokerCode,
  problems,
  brokerStderrCrash: /unhandled|uncaught|FATAL/i.test(brokerStderr),
};
console.log(JSON.stringify(summary));
const leaked = total(endHandles) > total(baselineHandles);
const ok =
  behind.length === 0 &&
  stateOk &&
  problems.length === 0 &&
  brokerCode === 0 &&
  !leaked &&
  !summary.brokerStderrCrash;
if (!ok) console.error(`soak FAILED${leaked ? ' (handles leaked)' : ''}`);
process.exit(ok ? 0 : 1);
