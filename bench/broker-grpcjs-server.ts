/**
 * The comparison point for the stack choice (`npm run bench -- broker --server grpc-js`): the
 * same fan-out on `@grpc/grpc-js` with pass-through (identity) serializers, so grpc-js does no
 * protobuf work; our envelope parser and encode-once frame are reused. Only the transport
 * differs from `broker-server.ts`. Not a product: no limits, no queues, no metrics.
 */
import * as grpc from '@grpc/grpc-js';
import { decodeMessage, encodeForward, PUBSUB_METHOD_PATH } from '../src/protocol/index.js';
import { answerBenchRequests, createSubscriberTable } from './comparison-server.js';

type Call = grpc.ServerDuplexStream<Buffer, Buffer>;

async function main(): Promise<void> {
  const subscribers = createSubscriberTable<Call>();
  const identity = (b: Buffer) => b;
  const service: grpc.ServiceDefinition = {
    PubSub: {
      path: PUBSUB_METHOD_PATH,
      requestStream: true,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  };
  const server = new grpc.Server();
  server.addService(service, {
    PubSub(call: Call) {
      const mine = new Set<string>();
      call.on('data', (msg: Buffer) => {
        const env = decodeMessage(msg);
        if (env.kind !== 'subscribe' && env.kind !== 'push') return;
        const shardId = env.shardId;
        if (env.kind === 'subscribe') {
          subscribers.subscribe(shardId, call);
          mine.add(shardId);
        } else if (env.kind === 'push') {
          const set = subscribers.of(shardId);
          if (set === undefined) return;
          const body = encodeForward(env.pushDiff, Date.now(), false);
          for (const c of set) if (c !== call) c.write(body);
        }
      });
      const cleanup = () => {
        for (const s of mine) subscribers.unsubscribe(s, call);
        mine.clear();
      };
      call.on('end', () => {
        cleanup();
        call.end();
      });
      call.on('error', cleanup);
      call.on('cancelled', cleanup);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  answerBenchRequests(subscribers, () => server.forceShutdown());
  process.send?.({ type: 'ready', port });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
