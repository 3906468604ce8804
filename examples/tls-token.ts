/**
 * Example: clients of a broker that requires TLS and a bearer token, e.g. one started with
 *
 *   persist-pubsub broker --tls-cert server.crt --tls-key server.key --auth-token-file token
 *
 * and run as
 *
 *   node dist/examples/tls-token.js --url grpcs://127.0.0.1:6879 --ca ca.crt --token-file token \
 *     --consensus sqlite:./persist.db --count 20
 *
 * A writer and a reader client (pass `tls.cert`/`tls.key` too for mTLS) commit and follow a
 * shard. Connecting never blocks, so a wrong CA or token shows up as a client that never
 * connects: this example waits `--connect-timeout-ms` for it and exits 1 with the client's last
 * status if it does not. Otherwise it prints a JSON summary and exits 0.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
// In your project: from 'persist-pubsub'.
import { createPersistClient, type PersistClient, type PersistState } from '../src/index.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'grpcs://127.0.0.1:6879' },
    ca: { type: 'string' },
    'token-file': { type: 'string' },
    'server-name': { type: 'string' },
    consensus: { type: 'string', default: 'sqlite:./persist.db' },
    count: { type: 'string', default: '20' },
    'connect-timeout-ms': { type: 'string', default: '5000' },
  },
});

const pubsub = {
  url: values.url,
  tls: {
    ca: values.ca === undefined ? undefined : readFileSync(values.ca),
    serverName: values['server-name'],
  },
  authToken:
    values['token-file'] === undefined
      ? undefined
      : readFileSync(values['token-file'], 'utf8').trim(),
};

async function connected(c: PersistClient, name: string): Promise<void> {
  const until = Date.now() + Number(values['connect-timeout-ms']);
  while (c.pubsub.status.state !== 'connected') {
    if (Date.now() > until) {
      throw new Error(
        `${name} did not connect to ${values.url}: ${JSON.stringify(c.pubsub.status)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

const writer = await createPersistClient({
  consensus: values.consensus,
  pubsub,
  callerId: 'tls-writer',
});
const reader = await createPersistClient({
  consensus: values.consensus,
  pubsub,
  callerId: 'tls-reader',
});
try {
  const shardId = `s${randomUUID()}`;
  const w = await writer.openShard<PersistState>(shardId);
  const r = await reader.openShard<PersistState>(shardId);
  await connected(writer, 'writer');
  await connected(reader, 'reader');
  const latencies: number[] = [];
  for (let i = 0; i < Number(values.count); i++) {
    const next = r.waitForSeqno(r.seqno + 1n, { signal: AbortSignal.timeout(10_000) });
    await w.update((s) => ({ ...s, upper: [(s.upper[0] ?? 0n) + 1n] }));
    const t = performance.now();
    await next;
    latencies.push(performance.now() - t);
  }
  latencies.sort((a, b) => a - b);
  const fetches = await reader.registry
    .getSingleMetric('persist_pubsub_state_consensus_reads_total')
    ?.get();
  console.log(
    JSON.stringify({
      readerSeqno: String(r.seqno),
      upper: String(r.state.upper[0]),
      p50Ms: latencies[Math.floor((latencies.length - 1) / 2)],
      readerConsensusReads: Object.fromEntries(
        (fetches?.values ?? []).map((v) => [v.labels.reason, v.value]),
      ),
    }),
  );
  w.close();
  r.close();
} catch (err) {
  console.error(`tls-token: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  await Promise.all([writer.close(), reader.close()]);
}
