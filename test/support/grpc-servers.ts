/**
 * Three independent gRPC servers of the `PubSub` method, behind one small test interface (the
 * server-side mirror of `grpc-clients.ts`), each a tiny reference broker: subscribe and
 * unsubscribe per call, a push is forwarded to every other call subscribed to its shard,
 * re-stamped with a fixed server time (1700000000.5 s), never back to its sender.
 * - grpc-js (`grpc.Server` with pass-through serializers),
 * - connect-node (`connectNodeAdapter` on `node:http2`, the generated service),
 * - Python grpcio (`test/fixtures/python/pubsub_server.py`, protobuf by hand there).
 * They pin that our client (`createGrpcTransport` on `node:http2`) speaks gRPC to each.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createServer, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError, type ConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import {
  ProtoPersistPubSub,
  type ProtoPubSubMessage,
  ProtoPubSubMessageSchema,
} from '../../src/gen/mz_persist_client/internal/service/pubsub_pb.js';
import { AsyncQueue, PUBSUB_PATH } from './grpc-clients.js';
import { PYTHON } from './prerequisites.js';

export type ServerKind = 'grpc-js' | 'connect' | 'python';

const PY_SERVER = fileURLToPath(new URL('../fixtures/python/pubsub_server.py', import.meta.url));
/** The server time every forwarded message carries. */
export const SERVER_STAMP = { secs: 1_700_000_000n, nanos: 500_000_000 };

/** One call as the server saw it. */
export interface ServerCall {
  /** Request metadata: every value of one header, as grpc-js `Metadata.get` gives them. */
  readonly metadata: { get(name: string): string[] };
  readonly received: ProtoPubSubMessage[];
  readonly subs: Set<string>;
  /** Writes raw message bytes (one gRPC message) to this call. */
  send(message: Uint8Array): void;
}

export interface TestServer {
  readonly kind: ServerKind;
  readonly port: number;
  readonly calls: ServerCall[];
  /** Ends every live call with UNAVAILABLE. */
  endAll(): void;
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** Refuse calls without `authorization: Bearer <token>` (UNAUTHENTICATED). */
  token?: string;
  /** Listen on this port. @default 0 (any free one) */
  port?: number;
}

/** The reference broker's routing, shared by the grpc-js and connect servers. */
function route(calls: ServerCall[], from: ServerCall, bytes: Uint8Array): void {
  const msg = fromBinary(ProtoPubSubMessageSchema, bytes);
  (from.received as ProtoPubSubMessage[]).push(msg);
  if (msg.message.case === 'subscribe') from.subs.add(msg.message.value.shardId);
  if (msg.message.case === 'unsubscribe') from.subs.delete(msg.message.value.shardId);
  if (msg.message.case === 'pushDiff') {
    const fwd = toBinary(
      ProtoPubSubMessageSchema,
      create(ProtoPubSubMessageSchema, { timestamp: SERVER_STAMP, message: msg.message }),
    );
    for (const other of calls) {
      if (other !== from && other.subs.has(msg.message.value.shardId)) other.send(fwd);
    }
  }
}

const id = (b: Buffer) => b;

async function startGrpcJs(o: TestServerOptions): Promise<TestServer> {
  const calls: ServerCall[] = [];
  const live = new Set<grpc.ServerDuplexStream<Buffer, Buffer>>();
  const server = new grpc.Server();
  server.addService(
    {
      PubSub: {
        path: PUBSUB_PATH,
        requestStream: true,
        responseStream: true,
        requestSerialize: id,
        requestDeserialize: id,
        responseSerialize: id,
        responseDeserialize: id,
      },
    },
    {
      PubSub: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        if (
          o.token !== undefined &&
          call.metadata.get('authorization')[0] !== `Bearer ${o.token}`
        ) {
          call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'wrong token' });
          return;
        }
        const c: ServerCall = {
          metadata: { get: (name) => call.metadata.get(name).map(String) },
          received: [],
          subs: new Set(),
          send: (m) => call.write(Buffer.from(m)),
        };
        calls.push(c);
        live.add(call);
        call.on('data', (buf: Buffer) => route(calls, c, buf));
        call.on('error', () => {});
        call.on('end', () => call.end());
        call.on('close', () => live.delete(call));
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${o.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return {
    kind: 'grpc-js',
    port,
    calls,
    endAll() {
      for (const call of live)
        call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'bye' });
      live.clear();
    },
    close: async () => server.forceShutdown(),
  };
}

async function startConnect(o: TestServerOptions): Promise<TestServer> {
  const calls: ServerCall[] = [];
  const ends = new Set<() => void>();
  const routes = (router: ConnectRouter) =>
    router.service(ProtoPersistPubSub, {
      async *pubSub(requests, ctx) {
        if (
          o.token !== undefined &&
          ctx.requestHeader.get('authorization') !== `Bearer ${o.token}`
        ) {
          throw new ConnectError('wrong token', Code.Unauthenticated);
        }
        const out = new AsyncQueue<ProtoPubSubMessage | Error>();
        const c: ServerCall = {
          metadata: {
            get: (name) => {
              const v = ctx.requestHeader.get(name);
              return v === null ? [] : [v];
            },
          },
          received: [],
          subs: new Set(),
          send: (m) => out.push(fromBinary(ProtoPubSubMessageSchema, m)),
        };
        calls.push(c);
        const end = () => out.push(new ConnectError('bye', Code.Unavailable));
        ends.add(end);
        void (async () => {
          try {
            for await (const m of requests) route(calls, c, toBinary(ProtoPubSubMessageSchema, m));
          } catch {
            // the call ended
          }
          out.end();
        })();
        try {
          for await (const item of out) {
            if (item instanceof Error) throw item;
            yield item;
          }
        } finally {
          ends.delete(end);
        }
      },
    });
  const server: Http2Server = createServer(connectNodeAdapter({ routes }));
  await new Promise<void>((r) => server.listen(o.port ?? 0, '127.0.0.1', r));
  const sessions = new Set<import('node:http2').ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  return {
    kind: 'connect',
    port: (server.address() as AddressInfo).port,
    calls,
    endAll() {
      for (const end of ends) end();
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  };
}

async function startPython(o: TestServerOptions): Promise<TestServer> {
  const proc: ChildProcessWithoutNullStreams = spawn(PYTHON, [PY_SERVER, o.token ?? ''], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const calls = new Map<number, ServerCall & { md: Record<string, string> }>();
  const ordered: ServerCall[] = [];
  let buf = '';
  const port = await new Promise<number>((resolve, reject) => {
    proc.on('error', reject);
    proc.on('exit', (code) => reject(new Error(`python server exited with ${code}`)));
    proc.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = JSON.parse(buf.slice(0, nl)) as {
          port?: number;
          call?: number;
          metadata?: Record<string, string>;
          msg?: string;
        };
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        if (line.port !== undefined) resolve(line.port);
        if (line.call === undefined) continue;
        if (line.metadata !== undefined) {
          const md = line.metadata;
          const c = {
            md,
            metadata: { get: (name: string) => (md[name] === undefined ? [] : [md[name]]) },
            received: [],
            subs: new Set<string>(),
            send: () => {
              throw new Error('the python server only forwards');
            },
          };
          calls.set(line.call, c);
          ordered.push(c);
        } else if (line.msg !== undefined) {
          const c = calls.get(line.call);
          const m = fromBinary(ProtoPubSubMessageSchema, Buffer.from(line.msg, 'hex'));
          (c?.received as ProtoPubSubMessage[] | undefined)?.push(m);
          if (m.message.case === 'subscribe') c?.subs.add(m.message.value.shardId);
          if (m.message.case === 'unsubscribe') c?.subs.delete(m.message.value.shardId);
        }
      }
    });
  });
  return {
    kind: 'python',
    port,
    calls: ordered,
    endAll() {
      proc.stdin.write(`${JSON.stringify({ op: 'end_all', code: 'UNAVAILABLE' })}\n`);
    },
    close: () =>
      new Promise<void>((r) => {
        if (proc.exitCode !== null) return r();
        proc.once('exit', () => r());
        proc.kill('SIGKILL');
      }),
  };
}

export function startTestServer(kind: ServerKind, o: TestServerOptions = {}): Promise<TestServer> {
  switch (kind) {
    case 'grpc-js':
      return startGrpcJs(o);
    case 'connect':
      return startConnect(o);
    case 'python':
      return startPython(o);
  }
}
