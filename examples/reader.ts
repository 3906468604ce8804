/**
 * Example: a reader that follows a shard like a materialized view. It keeps a view derived from
 * the shard's state (how far the data is complete — the `upper` — and the rows in its batches)
 * and updates it on every change, the moment a pushed diff is applied; with no broker (or
 * pubsub switched off) it polls Consensus and stays correct, only slower.
 *
 *   node dist/examples/reader.js --consensus sqlite:./persist.db --pubsub grpc://127.0.0.1:6879 \
 *     --shard s00000000-0000-0000-0000-000000000001 --until-upper 20 --timeout-ms 30000
 *
 * Prints the view as one JSON line per change (the first is the view at open), then a last
 * line with how versions arrived (`appliedBy` pubsub or poll) and why Consensus was read, and
 * exits 0 once `upper` reaches `--until-upper`
 * (1 if `--timeout-ms` passes first).
 */
import { parseArgs } from 'node:util';
// In your project: from 'persist-pubsub'.
import { createPersistClient, type PersistState } from '../src/index.js';

const { values } = parseArgs({
  options: {
    consensus: { type: 'string', default: 'sqlite:./persist.db' },
    pubsub: { type: 'string', default: 'grpc://127.0.0.1:6879' },
    shard: { type: 'string', default: 's00000000-0000-0000-0000-000000000001' },
    'until-upper': { type: 'string', default: '20' },
    'timeout-ms': { type: 'string', default: '30000' },
  },
});
const untilUpper = BigInt(values['until-upper']);

interface View {
  seqno: string;
  upper: string;
  batches: number;
  rows: string;
}

function view(seqno: bigint, s: PersistState): View {
  let rows = 0n;
  for (const b of s.batches.values()) rows += b.len;
  return {
    seqno: String(seqno),
    upper: String(s.upper[0] ?? 0n),
    batches: s.batches.size,
    rows: String(rows),
  };
}

const client = await createPersistClient({
  consensus: values.consensus,
  pubsub: values.pubsub,
  callerId: 'example-reader',
});
const signal = AbortSignal.timeout(Number(values['timeout-ms']));
let done = false;
try {
  const shard = await client.openShard<PersistState>(values.shard);
  // `listen` yields the current state first, then every change (coalesced if we fall behind).
  for await (const { seqno, state } of shard.listen({ signal })) {
    console.log(JSON.stringify(view(seqno, state)));
    if ((state.upper[0] ?? 0n) >= untilUpper) {
      done = true;
      break;
    }
  }
  shard.close();
} catch (err) {
  if (!signal.aborted) throw err;
} finally {
  // How the versions got here (pubsub or a Consensus read), and why Consensus was read.
  const count = async (metric: string, label: string, suffix = '') => {
    const m = await client.registry.getSingleMetric(metric)?.get();
    const values = (m?.values ?? []).filter(
      (v) => suffix === '' || (v as { metricName?: string }).metricName === metric + suffix,
    );
    return Object.fromEntries(values.map((v) => [v.labels[label], v.value]));
  };
  const appliedBy = await count('persist_pubsub_e2e_latency_seconds', 'path', '_count');
  const consensusReads = await count('persist_pubsub_state_consensus_reads_total', 'reason');
  console.log(JSON.stringify({ appliedBy, consensusReads, transport: client.pubsub.transport }));
  await client.close();
}
if (!done) {
  console.error(`reader: upper did not reach ${untilUpper} in time`);
  process.exitCode = 1;
}
