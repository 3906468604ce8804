/**
 * The floor of the stack (`npm run bench -- broker --server floor`): the same fan-out with
 * nothing but `node:http2` and the protocol codec: each decoded push is written at once, as its
 * own frame, to every other stream subscribed to its shard. No queues, limits, metrics, resume
 * rings or coalescing. What this costs per delivery is what `node:http2` and the kernel cost,
 * which no broker logic on this stack can go below; the difference to `broker-server.ts` is the
 * broker's own work. Not a product.
 */
import { createServer, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createFrameDecoder, decodeMessage, encodeForward } from '../src/protocol/index.js';

async function main(): Promise<void> {
  const subscribers = new Map<string, Set<ServerHttp2Stream>>();
  let subscriptions = 0;
  const server = createServer({ settings: { initialWindowSize: 256 * 1024 } });
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    const decoder = createFrameDecoder(4 * 1024 * 1024);
    const onMessage = (message: Buffer) => {
      const m = decodeMessage(message);
      if (m.kind === 'subscribe') {
        let set = subscribers.get(m.shardId);
        if (set === undefined) {
          set = new Set();
          subscribers.set(m.shardId, set);
        }
        if (!set.has(stream)) subscriptions++;
        set.add(stream);
      } else if (m.kind === 'push') {
        const set = subscribers.get(m.shardId);
        if (set === undefined) return;
        const frame = encodeForward(m.pushDiff, Date.now(), true);
        for (const s of set) if (s !== stream) s.write(frame);
      }
    };
    stream.on('data', (chunk: Buffer) => decoder.push(chunk, onMessage));
  });
  // `bench broker --socket unix`: a Unix socket instead of loopback TCP.
  const socket = process.env.PERSIST_PUBSUB_BENCH_SOCKET;
  await new Promise<void>((r) =>
    socket === undefined
      ? server.listen(0, '127.0.0.1', () => r())
      : server.listen(socket, () => r()),
  );
  process.on('message', (m: { type: string }) => {
    if (m.type === 'stats') {
      process.send?.({
        type: 'stats',
        cpu: process.cpuUsage(),
        rss: process.memoryUsage().rss,
        heapUsed: process.memoryUsage().heapUsed,
        subscriptions,
        dropped: 0,
      });
    } else if (m.type === 'exit') {
      process.exit(0);
    }
  });
  process.send?.({
    type: 'ready',
    port: socket === undefined ? (server.address() as AddressInfo).port : 0,
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
