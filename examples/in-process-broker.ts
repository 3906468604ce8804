/**
 * Example: a process that hosts the broker itself (no sidecar) and also writes and reads.
 * Clients in this process pass the `Broker` as `pubsub`: the same-process delegate, which hands
 * diffs over without serialization or a socket. Other processes reach the same broker over gRPC
 * at the address printed first.
 *
 *   node dist/examples/in-process-broker.js --consensus sqlite:./persist.db --listen-port 6879 --count 50
 *
 * Prints `{"listening":"host:port"}`, then once done a JSON summary: commits, the reader's
 * commit → observed latency p50/p99 in ms, the transports used and the reader's Consensus
 * reads; exits 0.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
// In your project: from 'persist-pubsub'.
import { createBroker, createPersistClient, type PersistState } from '../src/index.js';

const { values } = parseArgs({
  options: {
    consensus: { type: 'string', default: 'sqlite:./persist.db' },
    'listen-port': { type: 'string', default: '0' },
    count: { type: 'string', default: '50' },
  },
});
const count = Number(values.count);

const broker = createBroker({ listen: { host: '127.0.0.1', port: Number(values['listen-port']) } });
await broker.start();
console.log(JSON.stringify({ listening: `${broker.address.host}:${broker.address.port}` }));

// Writer and reader are separate clients here (as two components of one service would be);
// both use the broker in this process directly.
const writer = await createPersistClient({
  consensus: values.consensus,
  pubsub: broker,
  callerId: 'writer',
});
const reader = await createPersistClient({
  consensus: values.consensus,
  pubsub: broker,
  callerId: 'reader',
});
const shardId = `s${randomUUID()}`;
try {
  const w = await writer.openShard<PersistState>(shardId);
  const r = await reader.openShard<PersistState>(shardId);
  for (const c of [writer, reader]) {
    while (c.pubsub.status.state !== 'connected') await new Promise((res) => setTimeout(res, 5));
  }
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    const next = r.waitForSeqno(r.seqno + 1n, { signal: AbortSignal.timeout(10_000) });
    const { seqno } = await w.update((s) => ({ ...s, upper: [(s.upper[0] ?? 0n) + 1n] }));
    const committedAt = performance.now();
    const seen = await next;
    latencies.push(performance.now() - committedAt);
    if (seen.seqno !== seqno) throw new Error(`reader at ${seen.seqno}, expected ${seqno}`);
  }
  latencies.sort((a, b) => a - b);
  const at = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)];
  const reads = await reader.registry
    .getSingleMetric('persist_pubsub_state_consensus_reads_total')
    ?.get();
  console.log(
    JSON.stringify({
      commits: count,
      readerSeqno: String(r.seqno),
      p50Ms: at(0.5),
      p99Ms: at(0.99),
      transports: [writer.pubsub.transport, reader.pubsub.transport],
      readerConsensusReads: Object.fromEntries(
        (reads?.values ?? []).map((v) => [v.labels.reason, v.value]),
      ),
    }),
  );
  w.close();
  r.close();
} finally {
  await Promise.all([writer.close(), reader.close()]);
  await broker.close({ deadlineMs: 1000 });
}
