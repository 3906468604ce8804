// Ping-pong latency of one diff (one in flight, 256 bytes) for the three topologies in the
// README "Topologies": single broker, NATS direct, two brokers bridged by NATS. Needs the build
// (npx tsc -p tsconfig.build.json) and nats-server on 127.0.0.1:4222. Usage: node test/nats-latency.mjs [N]
import { createBroker, createNatsBridge } from '../dist/src/broker/index.js';
import {
  createFlags,
  createGrpcPubSubClient,
  createNatsTransport,
  createPubSubClient,
} from '../dist/src/client/index.js';

const N = Number(process.argv[2] ?? 2000);
const NATS = 'nats://127.0.0.1:4222';
const flags = () => createFlags({ persist_pubsub_reconnect_backoff_ms: 20 });
const prefix = `pplat.${Date.now()}`;
const until = async (p) => {
  while (!p()) await new Promise((r) => setTimeout(r, 2));
};
async function measure(name, w, r) {
  const S = `s${crypto.randomUUID()}`;
  r.subscribe(S);
  w.subscribe(S);
  const it = r.events()[Symbol.asyncIterator]();
  await until(() => w.status.state === 'connected' && r.status.state === 'connected');
  // warm up until delivered
  let got = false;
  const warm = (async () => {
    for (;;) {
      const n = await it.next();
      if (n.value?.kind === 'diff') {
        got = true;
        return;
      }
    }
  })();
  while (!got) {
    w.push(S, 0n, new Uint8Array(256));
    await new Promise((r) => setTimeout(r, 20));
  }
  await warm;
  const lat = [];
  for (let i = 1; i <= N; i++) {
    const t0 = process.hrtime.bigint();
    w.push(S, BigInt(i), new Uint8Array(256));
    for (;;) {
      const n = await it.next();
      if (n.value?.kind === 'diff' && n.value.seqno === BigInt(i)) break;
    }
    lat.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(0);
  console.log(
    `${name}: n=${N} p50=${q(0.5)}us p90=${q(0.9)}us p99=${q(0.99)}us max=${lat.at(-1).toFixed(0)}us`,
  );
  await w.close();
  await r.close();
}
const g = (b, id) =>
  createGrpcPubSubClient({
    url: `grpc://127.0.0.1:${b.address.port}`,
    callerId: id,
    flags: flags(),
  });
const one = createBroker({ listen: { host: '127.0.0.1', port: 0 } });
await one.start();
await measure('single broker (gRPC)', g(one, 'w'), g(one, 'r'));
const n = (id) =>
  createPubSubClient(createNatsTransport({ url: NATS, subjectPrefix: prefix, callerId: id }), {
    flags: flags(),
  });
await measure('NATS direct', n('w'), n('r'));
const mk = async () => {
  const br = createNatsBridge({ url: NATS, subjectPrefix: prefix });
  const b = createBroker({ listen: { host: '127.0.0.1', port: 0 }, observer: br.observer });
  await b.start();
  await br.start(b);
  return { b, br };
};
const A = await mk();
const B = await mk();
await measure('bridged (gRPC->A->NATS->B->gRPC)', g(A.b, 'w'), g(B.b, 'r'));
await A.br.close();
await B.br.close();
A.b.destroy();
B.b.destroy();
one.destroy();
process.exit(0);
