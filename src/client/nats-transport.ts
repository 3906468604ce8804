/**
 * The NATS transport: clients talk to each other through a NATS server (or cluster) directly,
 * with no broker. It plugs into the shared lifecycle (`createPubSubClient`) like the gRPC
 * transport, so refcounted tokens, flags, metrics, the bounded receive queue, reconnect with
 * backoff, resubscription and the `resync` catch-up after every (re)connect are the same code.
 *
 * - One subject per shard, `<subjectPrefix>.<base64url(shard id)>` (scheme in
 *   `src/protocol/nats-subject.ts`, shared with the NATS bridge so NATS-direct clients and
 *   bridged brokers on one prefix see each other's diffs).
 * - Every message is the gRPC path's envelope: one `ProtoPubSubMessage` with `timestamp` (the
 *   sender's clock) and `push_diff` (shard id, seqno, diff, origin commit timestamp), without
 *   the 5-byte gRPC frame prefix.
 * - No echo: the connection is opened with `noEcho` (the server never delivers a connection's
 *   own publishes to it) and every publish carries `Persist-Pubsub-Origin: <this transport's
 *   id>`, checked on receipt too.
 * - Each connection attempt is a fresh NATS connection with nats.js's own reconnect turned off:
 *   when the server goes away the connection ends, the shared loop backs off
 *   (`persist_pubsub_reconnect_backoff_ms`), reconnects, re-sends every subscription and emits
 *   `resync`, and the persist client fetches each subscribed shard from Consensus once, exactly
 *   as after a broker restart on the gRPC path. Status changes are the shared status stream.
 * - Core NATS keeps no history: without the opt-in JetStream stream (`jetstream`),
 *   `resumeAfterSeqno` is not honoured (a reconnect is caught up by the resync fetch instead).
 *   With it, a (re)subscribe with a resume seqno first replays the stream's retained diffs newer
 *   than it (duplicates with live ones are possible and harmless). There are no gap notices from
 *   a server; a diff that skips ahead is recovered by the shard state's gap handling.
 */
import { type JetStreamClient, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import {
  headers,
  type Msg,
  type NatsConnection,
  type NodeConnectionOptions,
  nanos,
  connect as natsConnect,
  nuid,
  type Subscription,
} from '@nats-io/transport-node';
import {
  DEFAULT_SUBJECT_PREFIX,
  encodePush,
  ORIGIN_HEADER,
  parseNatsUrl,
  parseSubjectPrefix,
  shardIdOfSubject,
  shardSubject,
} from '../protocol/index.js';
import { type Clock, systemClock } from '../util/index.js';
import { ClientError } from './errors.js';
import { decodeInbound } from './inbound.js';
import type { ConnectOptions, PubSubConnection, PubSubTransport } from './transport.js';

/** One NATS connect attempt, in ms (the client's attempt timeout also applies). @default 5000 */
export const DEFAULT_NATS_CONNECT_TIMEOUT_MS = 5000;
/**
 * Ping the server this often, in ms; two unanswered pings end the connection. As the gRPC
 * path's keepalive (30 s), instead of nats.js's 2 minutes, so a silently dead server is noticed.
 */
export const DEFAULT_NATS_PING_INTERVAL_MS = 30_000;

/**
 * An optional JetStream stream over the shard subjects, with bounded retention, so a client that
 * (re)subscribes with `resumeAfterSeqno` first gets the retained diffs newer than it. The stream
 * is created if missing (memory storage), with subjects `<subjectPrefix>.>`; an existing stream
 * is used as it is. Without JetStream on the server, resume is skipped (logged once per connect
 * by the error it yields: nothing else changes).
 */
export interface NatsJetStreamOptions {
  /** Stream name. @default 'PERSIST_PUBSUB' */
  stream?: string | undefined;
  /** Retention by age, in ms. @default 60000 */
  maxAgeMs?: number | undefined;
  /** Retention by count, per shard subject. @default 64 */
  maxMsgsPerSubject?: number | undefined;
  /** Longest wait for one replay, in ms. @default 2000 */
  replayTimeoutMs?: number | undefined;
}

export interface NatsTransportOptions {
  /** `nats://host:port` or `tls://host:port`; comma-separated for several servers of a cluster. */
  url: string;
  /** Subject prefix; every client and bridged broker that should meet must share it. @default 'persist-pubsub.v1.shard' */
  subjectPrefix?: string | undefined;
  /** Shown by the NATS server as the connection name (`persist-pubsub-<callerId>`); ASCII. @default 'unknown' */
  callerId?: string | undefined;
  /** One NATS connect attempt, in ms. @default 5000 */
  connectTimeoutMs?: number | undefined;
  /** Ping the server this often, in ms; two unanswered pings end the connection. @default 30000 */
  pingIntervalMs?: number | undefined;
  /** Resume from a seqno through a JetStream stream. @default off (core NATS only) */
  jetstream?: NatsJetStreamOptions | undefined;
  /** Message timestamps (its wall time). @default systemClock */
  clock?: Clock | undefined;
  /** The nats.js connect function, injectable for tests. @default connect from @nats-io/transport-node */
  connect?: ((options: NodeConnectionOptions) => Promise<NatsConnection>) | undefined;
}

interface ResolvedJetStream {
  stream: string;
  maxAgeMs: number;
  maxMsgsPerSubject: number;
  replayTimeoutMs: number;
}

function resolveJetStream(o: NatsJetStreamOptions | undefined): ResolvedJetStream | undefined {
  if (o === undefined) return undefined;
  if (typeof o !== 'object' || o === null) throw bad('jetstream', 'must be an object');
  const stream = o.stream ?? 'PERSIST_PUBSUB';
  if (typeof stream !== 'string' || !/^[A-Za-z0-9_-]+$/.test(stream)) {
    throw bad('jetstream.stream', 'must be letters, digits, - and _');
  }
  const int = (v: unknown, field: string, dflt: number): number => {
    const x = v ?? dflt;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1) {
      throw bad(`jetstream.${field}`, 'must be an integer >= 1');
    }
    return x;
  };
  return {
    stream,
    maxAgeMs: int(o.maxAgeMs, 'maxAgeMs', 60_000),
    maxMsgsPerSubject: int(o.maxMsgsPerSubject, 'maxMsgsPerSubject', 64),
    replayTimeoutMs: int(o.replayTimeoutMs, 'replayTimeoutMs', 2000),
  };
}

const bad = (field: string, message: string): ClientError =>
  new ClientError('invalid_argument', `NatsTransportOptions.${field} ${message}`, { field });

export function createNatsTransport(options: NatsTransportOptions): PubSubTransport {
  if (typeof options !== 'object' || options === null) {
    throw new ClientError('invalid_argument', 'NatsTransportOptions must be an object');
  }
  let servers: string[];
  let prefix: string;
  try {
    servers = parseNatsUrl(options.url, 'url').servers;
  } catch (err) {
    throw bad('url', (err as Error).message.replace(/^url:? ?/, ''));
  }
  const p = parseSubjectPrefix(options.subjectPrefix ?? DEFAULT_SUBJECT_PREFIX);
  if (!p.ok) throw bad('subjectPrefix', p.detail);
  prefix = p.prefix;
  const callerId = options.callerId ?? 'unknown';
  if (typeof callerId !== 'string' || !/^[\x20-\x7e]*$/.test(callerId)) {
    throw bad('callerId', 'must be printable ASCII');
  }
  const timeout = options.connectTimeoutMs ?? DEFAULT_NATS_CONNECT_TIMEOUT_MS;
  if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 1) {
    throw bad('connectTimeoutMs', 'must be an integer >= 1');
  }
  const pingInterval = options.pingIntervalMs ?? DEFAULT_NATS_PING_INTERVAL_MS;
  if (typeof pingInterval !== 'number' || !Number.isInteger(pingInterval) || pingInterval < 1) {
    throw bad('pingIntervalMs', 'must be an integer >= 1');
  }
  const js = resolveJetStream(options.jetstream);
  const clock = options.clock ?? systemClock;
  const now = (): number => clock.nowMs();
  const connectFn = options.connect ?? natsConnect;
  /** This client's id in the origin header (one per transport: every connection it opens). */
  const origin = nuid.next();

  return {
    kind: 'nats',
    async connect({ signal, onMessage, onClose }: ConnectOptions): Promise<PubSubConnection> {
      signal.throwIfAborted();
      const attempt = connectFn({
        servers,
        name: `persist-pubsub-${callerId}`,
        noEcho: true,
        reconnect: false,
        timeout,
        pingInterval,
        maxPingOut: 2,
      });
      let nc: NatsConnection;
      try {
        nc = await new Promise<NatsConnection>((resolve, reject) => {
          const onAbort = (): void => reject(signal.reason);
          signal.addEventListener('abort', onAbort, { once: true });
          attempt.then(
            (c) => {
              signal.removeEventListener('abort', onAbort);
              resolve(c);
            },
            (err: unknown) => {
              signal.removeEventListener('abort', onAbort);
              reject(
                new ClientError(
                  'unavailable',
                  `nats ${servers.join(',')} unreachable: ${(err as Error).message}`,
                  { cause: err },
                ),
              );
            },
          );
        });
      } catch (err) {
        attempt.then((late) => late.close()).catch(() => {});
        throw err;
      }

      let open = true;
      const subs = new Map<string, Subscription>();
      void nc.closed().then((err) => {
        if (!open) return;
        open = false;
        subs.clear();
        onClose(
          new ClientError(
            'unavailable',
            `nats connection closed${err ? `: ${err.message}` : ''}`,
            err ? { cause: err } : {},
          ),
        );
      });

      const receive = (err: Error | null, msg: Msg): void => {
        if (!open) return;
        if (err !== null) {
          onMessage({ kind: 'unknown', bytes: 0 });
          return;
        }
        if (msg.headers?.get(ORIGIN_HEADER) === origin) return;
        const inbound = decodeInbound(msg.data);
        // The envelope must name the shard of the subject it came on; anything else is noise.
        if (
          inbound.kind !== 'unknown' &&
          shardIdOfSubject(prefix, msg.subject) !== inbound.shardId
        ) {
          onMessage({ kind: 'unknown', bytes: inbound.bytes });
          return;
        }
        onMessage(inbound);
      };

      // JetStream: ensure the stream once per connection; replay on (re)subscribe with resume.
      let jsc: JetStreamClient | undefined;
      if (js !== undefined) {
        try {
          const jsm = await jetstreamManager(nc);
          await jsm.streams.info(js.stream).catch(async () => {
            await jsm.streams.add({
              name: js.stream,
              subjects: [`${prefix}.>`],
              storage: StorageType.Memory,
              max_age: nanos(js.maxAgeMs),
              max_msgs_per_subject: js.maxMsgsPerSubject,
            });
          });
          jsc = jetstream(nc);
        } catch {
          // No JetStream on this server (or no permission): core NATS only.
          jsc = undefined;
        }
      }
      const replay = async (
        client: JetStreamClient,
        shardId: string,
        subject: string,
        after: bigint,
      ): Promise<void> => {
        if (js === undefined) return;
        try {
          const jsm = await client.jetstreamManager();
          const info = await jsm.streams.info(js.stream, { subjects_filter: subject });
          const count = info.state.subjects?.[subject] ?? 0;
          if (count === 0) return;
          // One filter subject as a string: servers before 2.10 take no list.
          const consumer = await client.consumers.get(js.stream, { filter_subjects: subject });
          const batch = await consumer.fetch({ max_messages: count, expires: js.replayTimeoutMs });
          for await (const m of batch) {
            if (!open || !subs.has(shardId)) break;
            if (m.headers?.get(ORIGIN_HEADER) === origin) continue;
            const inbound = decodeInbound(m.data);
            if (inbound.kind === 'diff' && inbound.shardId === shardId && inbound.seqno > after) {
              onMessage(inbound);
            }
          }
        } catch {
          // Replay is an optimisation: the resync fetch from Consensus covers what it misses.
        }
      };

      return {
        subscribe(shardId, resumeAfterSeqno) {
          if (!open) return false;
          const subject = shardSubject(prefix, shardId);
          if (subs.has(shardId)) return subject.length;
          try {
            subs.set(shardId, nc.subscribe(subject, { callback: receive }));
          } catch {
            return false;
          }
          if (jsc !== undefined && resumeAfterSeqno !== undefined) {
            void replay(jsc, shardId, subject, resumeAfterSeqno);
          }
          return subject.length;
        },
        unsubscribe(shardId) {
          if (!open) return false;
          const sub = subs.get(shardId);
          subs.delete(shardId);
          try {
            sub?.unsubscribe();
          } catch {
            return false;
          }
          return shardId.length;
        },
        push(shardId, seqno, diff, originTimestampMs) {
          if (!open) return false;
          const bytes = encodePush(shardId, seqno, diff, originTimestampMs, now(), false);
          const h = headers();
          h.set(ORIGIN_HEADER, origin);
          try {
            // Throws over the server's max_payload or once the connection is closing.
            nc.publish(shardSubject(prefix, shardId), bytes, { headers: h });
          } catch {
            return false;
          }
          return bytes.byteLength;
        },
        // nats.js buffers writes itself and flushes them every turn; nothing waits here.
        bufferedBytes: () => 0,
        close() {
          if (!open) return;
          open = false;
          subs.clear();
          void nc.close().catch(() => {});
        },
      };
    },
  };
}
