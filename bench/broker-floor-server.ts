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
import { answerBenchRequests, createSubscriberTable } from './comparison-server.js';

async function main(): Promise<void> {
  const subscribers = createSubscriberTable<ServerHttp2Stream>();
  const server = createServer({ settings: { initialWindowSize: 256 * 1024 } });
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    const decoder = createFrameDecoder(4 * 1024 * 1024);
    const onMessage = (message: Buffer) => {
      const m = decodeMessage(message);
      if (m.kind === 'subscribe') {
        subscribers.subscribe(m.shardId, stream);
      } else if (m.kind === 'push') {
        const set = subscribers.of(m.shardId);
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
  answerBenchRequests(subscribers);
  process.send?.({
    type: 'ready',
    port: socket === undefined ? (server.address() as AddressInfo).port : 0,
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
