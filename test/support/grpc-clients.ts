/**
 * Three independent real gRPC clients of the broker, behind one small test interface:
 * - grpc-js (`@grpc/grpc-js`, generic client with our generated message codecs),
 * - connect-node (`createGrpcTransport` + `createClient` on the generated service),
 * - Python grpcio (`test/fixtures/python/pubsub_client.py`, protobuf encoded by hand there).
 * Received messages are decoded with the generated `@bufbuild/protobuf` schema.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect as http2Connect,
} from 'node:http2';
import { fileURLToPath } from 'node:url';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import { afterH2Receive } from '../../src/broker/node-h2-client.test-support.js';
import {
  ProtoPersistPubSub,
  type ProtoPubSubMessage,
  ProtoPubSubMessageSchema,
} from '../../src/gen/mz_persist_client/internal/service/pubsub_pb.js';
import { PYTHON, PYTHON_GRPCIO, requirePrerequisite } from './prerequisites.js';
import { until } from './wait.js';

export { until };

export const PUBSUB_PATH = '/mz_persist_client.internal.service.ProtoPersistPubSub/PubSub';
const PY_CLIENT = fileURLToPath(new URL('../fixtures/python/pubsub_client.py', import.meta.url));

export type ClientKind = 'grpc-js' | 'connect' | 'python';

/**
 * True if tests with this client must be skipped: the Python peer is missing outside CI
 * (printed loudly once; under `CI=true` it throws instead, so the suite fails).
 */
export function clientMissing(kind: ClientKind): boolean {
  return kind === 'python' && !requirePrerequisite(PYTHON_GRPCIO);
}

/** Final status of a call: a gRPC status code name (`OK`, `RESOURCE_EXHAUSTED`, ...). */
export interface CallEnd {
  code: string;
  details: string;
}

export interface ConnectOptions {
  callerId?: string;
  token?: string;
  /** PEM of the CA that signed the server certificate (TLS). */
  ca?: string;
  caPath?: string;
  /** Client certificate for mTLS (grpc-js only). */
  cert?: string;
  key?: string;
  /** Extra request headers (grpc-js and connect). */
  headers?: Record<string, string>;
  /** TLS server name override. */
  serverName?: string;
}

export interface TestClient {
  readonly kind: ClientKind;
  readonly received: ProtoPubSubMessage[];
  send(message: ProtoPubSubMessage): void;
  push(shardId: string, seqno: bigint, diff: Uint8Array): void;
  subscribe(shardId: string, resumeAfterSeqno?: bigint): void;
  unsubscribe(shardId: string): void;
  /** Resolves with the received messages once `count` have arrived (or rejects on timeout). */
  waitFor(count: number, timeoutMs?: number): Promise<ProtoPubSubMessage[]>;
  /** Resolves when the call has ended. */
  readonly ended: Promise<CallEnd>;
  /** Half-closes the request stream. */
  end(): void;
  /** Cancels the call and releases everything. */
  close(): void;
}

abstract class BaseClient {
  readonly received: ProtoPubSubMessage[] = [];
  private waiters: (() => void)[] = [];
  protected resolveEnded!: (e: CallEnd) => void;
  readonly ended: Promise<CallEnd> = new Promise((r) => {
    this.resolveEnded = r;
  });
  private endedValue: CallEnd | undefined;

  constructor() {
    void this.ended.then((e) => {
      this.endedValue = e;
      this.wake();
    });
  }

  protected onMessage(m: ProtoPubSubMessage): void {
    this.received.push(m);
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  abstract send(message: ProtoPubSubMessage): void;

  push(shardId: string, seqno: bigint, diff: Uint8Array): void {
    this.send(
      create(ProtoPubSubMessageSchema, {
        timestamp: { secs: BigInt(Math.floor(Date.now() / 1000)), nanos: 0 },
        message: { case: 'pushDiff', value: { shardId, seqno, diff } },
      }),
    );
  }

  subscribe(shardId: string, resumeAfterSeqno?: bigint): void {
    this.send(
      create(ProtoPubSubMessageSchema, {
        message: { case: 'subscribe', value: { shardId, resumeAfterSeqno } },
      }),
    );
  }

  unsubscribe(shardId: string): void {
    this.send(
      create(ProtoPubSubMessageSchema, { message: { case: 'unsubscribe', value: { shardId } } }),
    );
  }

  waitFor(count: number, timeoutMs = 5000): Promise<ProtoPubSubMessage[]> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        reject(
          new Error(
            `timed out waiting for ${count} messages; got ${this.received.length}` +
              (this.endedValue
                ? ` (call ended: ${this.endedValue.code} ${this.endedValue.details})`
                : ''),
          ),
        );
      }, timeoutMs);
      const check = () => {
        if (this.received.length >= count) {
          clearTimeout(t);
          resolve(this.received.slice(0, count));
        } else if (this.endedValue !== undefined) {
          clearTimeout(t);
          reject(
            new Error(
              `call ended (${this.endedValue.code}: ${this.endedValue.details}) after ${this.received.length} of ${count} messages`,
            ),
          );
        } else {
          this.waiters.push(check);
        }
      };
      check();
    });
  }
}

class GrpcJsClient extends BaseClient implements TestClient {
  readonly kind = 'grpc-js';
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<ProtoPubSubMessage, ProtoPubSubMessage>;

  constructor(address: string, o: ConnectOptions) {
    super();
    const creds =
      o.ca === undefined
        ? grpc.credentials.createInsecure()
        : grpc.credentials.createSsl(
            Buffer.from(o.ca),
            o.key === undefined ? null : Buffer.from(o.key),
            o.cert === undefined ? null : Buffer.from(o.cert),
          );
    const channelOptions: grpc.ChannelOptions = {};
    if (o.serverName !== undefined) channelOptions['grpc.ssl_target_name_override'] = o.serverName;
    this.client = new grpc.Client(address, creds, channelOptions);
    const md = new grpc.Metadata();
    if (o.callerId !== undefined) md.set('persist-pubsub-caller-id', o.callerId);
    if (o.token !== undefined) md.set('authorization', `Bearer ${o.token}`);
    for (const [k, v] of Object.entries(o.headers ?? {})) md.set(k, v);
    this.call = this.client.makeBidiStreamRequest(
      PUBSUB_PATH,
      (m: ProtoPubSubMessage) => Buffer.from(toBinary(ProtoPubSubMessageSchema, m)),
      (b: Buffer) => fromBinary(ProtoPubSubMessageSchema, b),
      md,
    );
    this.call.on('data', (m: ProtoPubSubMessage) => this.onMessage(m));
    this.call.on('error', () => {});
    this.call.on('status', (s: grpc.StatusObject) =>
      this.resolveEnded({ code: grpc.status[s.code] ?? String(s.code), details: s.details }),
    );
  }

  send(message: ProtoPubSubMessage): void {
    this.call.write(message);
  }

  end(): void {
    this.call.end();
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

/** An unbounded async queue feeding connect's request stream. */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private done = false;
  private wake: (() => void) | undefined;
  push(item: T): void {
    this.items.push(item);
    this.wake?.();
  }
  end(): void {
    this.done = true;
    this.wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.done) return;
      await new Promise<void>((r) => {
        this.wake = r;
      });
      this.wake = undefined;
    }
  }
}

class ConnectClient extends BaseClient implements TestClient {
  readonly kind = 'connect';
  private readonly input = new AsyncQueue<ProtoPubSubMessage>();
  private readonly abort = new AbortController();

  constructor(address: string, o: ConnectOptions) {
    super();
    const transport = createGrpcTransport({
      baseUrl: `${o.ca === undefined ? 'http' : 'https'}://${address}`,
      nodeOptions: o.ca === undefined ? {} : { ca: o.ca, servername: o.serverName },
    });
    const client = createClient(ProtoPersistPubSub, transport);
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    if (o.callerId !== undefined) headers['persist-pubsub-caller-id'] = o.callerId;
    if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
    void (async () => {
      try {
        for await (const m of client.pubSub(this.input, { headers, signal: this.abort.signal })) {
          this.onMessage(m);
        }
        this.resolveEnded({ code: 'OK', details: '' });
      } catch (err) {
        const e = ConnectError.from(err);
        const name = Code[e.code] ?? String(e.code);
        // connect's names are CamelCase: map to the gRPC spelling.
        this.resolveEnded({
          code: name.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase(),
          details: e.rawMessage,
        });
      }
    })();
  }

  send(message: ProtoPubSubMessage): void {
    this.input.push(message);
  }

  end(): void {
    this.input.end();
  }

  close(): void {
    this.abort.abort();
    this.input.end();
  }
}

class PythonClient extends BaseClient implements TestClient {
  readonly kind = 'python';
  private readonly proc: ChildProcessWithoutNullStreams;
  readonly ready: Promise<void>;

  constructor(address: string, o: ConnectOptions) {
    super();
    this.proc = spawn(
      PYTHON,
      [PY_CLIENT, address, o.callerId ?? '', o.caPath ?? '', o.token ?? ''],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: {
          ...process.env,
          ...(o.serverName === undefined ? {} : { GRPC_SSL_TARGET_NAME_OVERRIDE: o.serverName }),
        },
      },
    );
    let buf = '';
    let stderr = '';
    let readyResolve!: () => void;
    this.ready = new Promise((r) => {
      readyResolve = r;
    });
    this.proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    this.proc.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i = buf.indexOf('\n');
      while (i >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        i = buf.indexOf('\n');
        const obj = JSON.parse(line) as {
          ready?: boolean;
          msg?: string;
          status?: string;
          details?: string;
        };
        if (obj.ready) readyResolve();
        if (obj.msg !== undefined) {
          this.onMessage(fromBinary(ProtoPubSubMessageSchema, Buffer.from(obj.msg, 'hex')));
        }
        if (obj.status !== undefined)
          this.resolveEnded({ code: obj.status, details: obj.details ?? '' });
      }
    });
    this.proc.on('exit', (code) => {
      this.resolveEnded({ code: 'PROCESS_EXIT', details: `python exited ${code}: ${stderr}` });
    });
    this.proc.stdin.on('error', () => {});
  }

  private command(cmd: Record<string, unknown>): void {
    if (!this.proc.stdin.writable) return;
    this.proc.stdin.write(
      `${JSON.stringify(cmd, (_k, v) => (typeof v === 'bigint' ? Number(v) : v))}\n`,
    );
  }

  send(message: ProtoPubSubMessage): void {
    this.command({
      op: 'raw',
      bytes: Buffer.from(toBinary(ProtoPubSubMessageSchema, message)).toString('hex'),
    });
  }

  override push(shardId: string, seqno: bigint, diff: Uint8Array): void {
    this.command({ op: 'push', shard: shardId, seqno, diff: Buffer.from(diff).toString('hex') });
  }

  override subscribe(shardId: string, resumeAfterSeqno?: bigint): void {
    if (resumeAfterSeqno !== undefined) super.subscribe(shardId, resumeAfterSeqno);
    else this.command({ op: 'subscribe', shard: shardId });
  }

  override unsubscribe(shardId: string): void {
    this.command({ op: 'unsubscribe', shard: shardId });
  }

  end(): void {
    this.command({ op: 'end' });
  }

  close(): void {
    this.proc.kill('SIGKILL');
  }
}

/** Opens a PubSub call with the given client library. Python: resolves once the call started. */
export async function openClient(
  kind: ClientKind,
  address: string,
  options: ConnectOptions = {},
): Promise<TestClient> {
  if (kind === 'grpc-js') return new GrpcJsClient(address, options);
  if (kind === 'connect') return new ConnectClient(address, options);
  const c = new PythonClient(address, options);
  await Promise.race([
    c.ready,
    c.ended.then((e) => {
      throw new Error(`python client ended before ready: ${e.code} ${e.details}`);
    }),
  ]);
  return c;
}

/** Resolves after `ms` and asserts nothing new arrived at `client` meanwhile. */
export async function expectQuiet(client: TestClient, ms: number): Promise<void> {
  const before = client.received.length;
  await new Promise((r) => setTimeout(r, ms));
  if (client.received.length !== before) {
    throw new Error(
      `${client.kind} received ${client.received.length - before} unexpected messages`,
    );
  }
}

/** How a raw call ended: HTTP status, gRPC status (trailers or trailers-only), or a reset. */
export interface RawEnd {
  httpStatus: number | undefined;
  grpcStatus: string | undefined;
  grpcMessage: string | undefined;
  rstCode: number | undefined;
}

export interface RawCall {
  readonly session: ClientHttp2Session;
  readonly stream: ClientHttp2Stream;
  /** Decoded response messages (gRPC frames split). */
  readonly messages: Buffer[];
  readonly ended: Promise<RawEnd>;
  /** Writes one gRPC frame holding `message` (flag 0 unless given). */
  sendMessage(message: Uint8Array, flag?: number): void;
  /**
   * Resets the stream (and closes the session if the call opened it) on the next turn of the
   * event loop: callers close right after awaiting `ended` (node-h2-client.test-support.ts).
   */
  close(): void;
}

/**
 * A bare `node:http2` gRPC call, for what real clients refuse to send: malformed frames,
 * compressed flags, wrong content types, and a subscriber that never reads (`stream.pause()`).
 */
export function openRaw(
  address: string,
  options: { path?: string; headers?: Record<string, string>; session?: ClientHttp2Session } = {},
): RawCall {
  const session = options.session ?? http2Connect(`http://${address}`);
  session.on('error', () => {});
  const stream = session.request({
    ':method': 'POST',
    ':path': options.path ?? PUBSUB_PATH,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...options.headers,
  });
  const messages: Buffer[] = [];
  const result: RawEnd = {
    httpStatus: undefined,
    grpcStatus: undefined,
    grpcMessage: undefined,
    rstCode: undefined,
  };
  let pending = Buffer.alloc(0);
  let finish!: (e: RawEnd) => void;
  const ended = new Promise<RawEnd>((resolve) => {
    finish = resolve;
  });
  stream.on('response', (h) => {
    result.httpStatus = Number(h[':status']);
    if (h['grpc-status'] !== undefined) {
      result.grpcStatus = String(h['grpc-status']);
      result.grpcMessage =
        h['grpc-message'] === undefined ? undefined : decodeURIComponent(String(h['grpc-message']));
      finish(result);
    }
  });
  stream.on('trailers', (t) => {
    result.grpcStatus = t['grpc-status'] === undefined ? undefined : String(t['grpc-status']);
    result.grpcMessage =
      t['grpc-message'] === undefined ? undefined : decodeURIComponent(String(t['grpc-message']));
    finish(result);
  });
  stream.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const len = pending.readUInt32BE(1);
      messages.push(pending.subarray(5, 5 + len));
      pending = pending.subarray(5 + len);
    }
  });
  stream.on('error', () => {});
  stream.on('close', () => {
    if (stream.rstCode !== undefined && stream.rstCode !== 0) result.rstCode = stream.rstCode;
    finish(result);
  });
  return {
    session,
    stream,
    messages,
    ended,
    sendMessage(message, flag = 0) {
      const head = Buffer.alloc(5);
      head[0] = flag;
      head.writeUInt32BE(message.length, 1);
      stream.write(Buffer.concat([head, message]));
    },
    close() {
      void afterH2Receive().then(() => {
        stream.close();
        if (options.session === undefined) session.close();
      });
    },
  };
}
