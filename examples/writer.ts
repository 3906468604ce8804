/**
 * Example: a writer. It appends batches to one persist-like shard, advancing the shard's
 * `upper` by one per commit, through `createPersistClient`: every commit is a compare-and-set
 * on Consensus, then pushed to the broker so readers see it at once.
 *
 *   node dist/examples/writer.js --consensus sqlite:./persist.db --pubsub grpc://127.0.0.1:6879 \
 *     --shard s00000000-0000-0000-0000-000000000001 --count 20 --interval-ms 50
 *
 * Prints one JSON line per commit (`{"seqno","upper"}`) and exits 0.
 */
import { parseArgs } from 'node:util';
// In your project: from 'persist-pubsub'.
import { createPersistClient, type HollowBatch, type PersistState } from '../src/index.js';

const { values } = parseArgs({
  options: {
    consensus: { type: 'string', default: 'sqlite:./persist.db' },
    pubsub: { type: 'string', default: 'grpc://127.0.0.1:6879' },
    shard: { type: 'string', default: 's00000000-0000-0000-0000-000000000001' },
    count: { type: 'string', default: '20' },
    'interval-ms': { type: 'string', default: '50' },
  },
});
const count = Number(values.count);
const intervalMs = Number(values['interval-ms']);
if (!Number.isSafeInteger(count) || count < 1)
  throw new Error('--count must be a positive integer');
if (!Number.isFinite(intervalMs) || intervalMs < 0) throw new Error('--interval-ms must be >= 0');

/** The next state: one more batch covering [upper, upper + 1), and the upper moved past it. */
function appendBatch(s: PersistState): PersistState {
  const lower = s.upper[0] ?? 0n;
  const upper = lower + 1n;
  const batch: HollowBatch = {
    lower: [lower],
    upper: [upper],
    since: s.since,
    partKeys: [`part-${lower}`],
    len: 100n,
  };
  const batches = new Map(s.batches);
  batches.set(`batch-${lower}`, batch);
  return { ...s, upper: [upper], batches };
}

const client = await createPersistClient({
  consensus: values.consensus,
  pubsub: values.pubsub,
  callerId: 'example-writer',
});
try {
  const shard = await client.openShard<PersistState>(values.shard);
  // Connecting never blocks. Commits made before the stream is up are not pushed (readers
  // still get them, from Consensus, a little later), so a short-lived writer waits a moment.
  const until = Date.now() + 2000;
  while (client.pubsub.status.state !== 'connected' && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 10));
  }
  for (let i = 0; i < count; i++) {
    const { seqno, state } = await shard.update(appendBatch);
    console.log(JSON.stringify({ seqno: String(seqno), upper: String(state.upper[0]) }));
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  shard.close();
} finally {
  await client.close();
}
