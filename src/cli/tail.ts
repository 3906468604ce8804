/**
 * `persist-pubsub tail --pubsub URL SHARD...`: watch shards' diffs go by, like `nats sub` or
 * `etcdctl watch`. It is an ordinary pubsub client (gRPC to a broker, or NATS directly) that
 * subscribes to the shards and prints every event as it arrives: each diff's shard, seqno,
 * size and latency (now minus the message's stamp: the broker's forwarding time on gRPC, the
 * sender's on NATS), and with `--decode` the diff decoded by the state model, as JSON. Gap
 * notices (diffs that will not arrive) are printed as such. Connection changes go to stderr.
 * It never pushes. Ctrl-C (SIGINT) or SIGTERM closes the client and exits 0; so does reaching
 * `--limit` diffs.
 */
import type { Writable } from 'node:stream';
import { type Command, Option } from 'commander';
import {
  type ConnectionStatus,
  createGrpcTransport,
  createNatsTransport,
  createPubSubClient,
  type PubSubClient,
  type PubSubEvent,
} from '../client/index.js';
import { decodePushedDiff, type StateModel } from '../shard-state/index.js';
import { CliError } from './cli-error.js';
import {
  addOutputOptions,
  collectShardArgs,
  type OutputFlags,
  runCommand,
} from './command-options.js';
import { AUTH_TOKEN_ENV, readAuthToken } from './config/broker-options.js';
import { ConfigError } from './config/config-error.js';
import { type Column, createRowWriter, toJsonText } from './output.js';
import { CLI_MODELS, DEFAULT_CLI_MODEL } from './state-models.js';

/** The caller id `tail` sends (brokers log it and label metrics with it). */
export const TAIL_CALLER_ID = 'persist-pubsub-tail';

/** One printed line: a diff, a gap notice, or a broker's refusal of a shard. */
export type TailRow =
  | {
      event: 'diff';
      atMs: number;
      shardId: string;
      seqno: bigint;
      bytes: number;
      /** Now minus the message's stamp, in ms; undefined without a stamp. */
      latencyMs: number | undefined;
      /** Now minus the writer's commit time, in ms, if the writer sent it. */
      commitLatencyMs: number | undefined;
      decoded?: unknown;
    }
  | {
      event: 'gap';
      atMs: number;
      shardId: string;
      reason: string;
      fromSeqno: bigint | undefined;
    }
  | {
      /** The broker refused this shard (e.g. an id it does not accept): nothing will arrive. */
      event: 'refused';
      atMs: number;
      shardId: string;
      reason: string;
      detail: string;
    };

const ms = (v: number | undefined) => (v === undefined ? '-' : `${v.toFixed(2)}ms`);

export const TAIL_COLUMNS: readonly Column<TailRow>[] = [
  { header: 'TIME', width: 12, value: (r) => new Date(r.atMs).toISOString().slice(11, 23) },
  { header: 'SHARD', width: 38, value: (r) => r.shardId },
  {
    header: 'SEQNO',
    width: 8,
    align: 'right',
    value: (r) =>
      r.event === 'diff' ? String(r.seqno) : r.event === 'gap' ? `${r.fromSeqno ?? '?'}..` : '-',
  },
  {
    header: 'BYTES',
    width: 6,
    align: 'right',
    value: (r) => (r.event === 'diff' ? String(r.bytes) : '-'),
  },
  {
    header: 'LATENCY',
    width: 10,
    align: 'right',
    value: (r) => (r.event === 'diff' ? ms(r.latencyMs) : '-'),
  },
  {
    header: 'DIFF',
    width: 0,
    value: (r) =>
      r.event === 'gap'
        ? `gap (${r.reason}): diffs from here on will not arrive; Consensus has them`
        : r.event === 'refused'
          ? `refused by the broker (${r.reason}): ${r.detail}`
          : r.decoded === undefined
            ? ''
            : toJsonText(r.decoded),
  },
];

function tailJson(r: TailRow): unknown {
  if (r.event === 'refused') {
    return {
      event: 'refused',
      at_ms: r.atMs,
      shard_id: r.shardId,
      reason: r.reason,
      detail: r.detail,
    };
  }
  if (r.event === 'gap') {
    return {
      event: 'gap',
      at_ms: r.atMs,
      shard_id: r.shardId,
      reason: r.reason,
      from_seqno: r.fromSeqno ?? null,
    };
  }
  const out: Record<string, unknown> = {
    event: 'diff',
    at_ms: r.atMs,
    shard_id: r.shardId,
    seqno: r.seqno,
    bytes: r.bytes,
    latency_ms: r.latencyMs ?? null,
    commit_latency_ms: r.commitLatencyMs ?? null,
  };
  if (r.decoded !== undefined) out.diff = r.decoded;
  return out;
}

/** The row for one event, or undefined for events not printed (resync). */
export function tailRow(
  ev: PubSubEvent,
  nowMs: number,
  model: StateModel<unknown, unknown> | undefined,
): TailRow | undefined {
  if (ev.kind === 'gap') {
    return {
      event: 'gap',
      atMs: nowMs,
      shardId: ev.shardId,
      reason: ev.reason,
      fromSeqno: ev.fromSeqno,
    };
  }
  if (ev.kind === 'refused') {
    return {
      event: 'refused',
      atMs: nowMs,
      shardId: ev.shardId,
      reason: ev.reason,
      detail: ev.detail,
    };
  }
  if (ev.kind !== 'diff') return undefined;
  const since = (t: number | undefined) => (t === undefined ? undefined : Math.max(0, nowMs - t));
  const row: TailRow = {
    event: 'diff',
    atMs: nowMs,
    shardId: ev.shardId,
    seqno: ev.seqno,
    bytes: ev.diff.byteLength,
    latencyMs: since(ev.brokerTimestampMs),
    commitLatencyMs: since(ev.originTimestampMs),
  };
  if (model !== undefined) {
    try {
      row.decoded = decodePushedDiff(model, ev.diff, ev.seqno).diff;
    } catch (err) {
      row.decoded = { error: (err as Error).message };
    }
  }
  return row;
}

/** The stderr line for a status change, if it deserves one. */
export function describeStatus(s: ConnectionStatus, url: string): string | undefined {
  switch (s.state) {
    case 'connecting':
      return s.attempt === 1 && s.reason === undefined ? `connecting to ${url}` : undefined;
    case 'connected':
      // A GOAWAY handover: the old stream still delivers while the next one is opened.
      if (s.draining === true) {
        return `broker draining (GOAWAY); moving to a new connection, the current one still delivers`;
      }
      return `connected to ${url}${s.reason === 'goaway' ? ' (moved: the old broker is draining)' : ''}`;
    case 'backoff':
      return `not connected (${s.error}); retrying in ${s.delayMs} ms`;
    default:
      return undefined;
  }
}

export interface TailOptions {
  client: PubSubClient;
  shardIds: readonly string[];
  out: Writable;
  json: boolean;
  limit?: number | undefined;
  model?: StateModel<unknown, unknown> | undefined;
  /** Ends the tail (Ctrl-C). */
  signal: AbortSignal;
  now?: (() => number) | undefined;
}

/** Subscribes and prints until `signal`, `limit` diffs, or the client ends; then closes it. */
export async function runTail(options: TailOptions): Promise<number> {
  const { client, signal } = options;
  const now = options.now ?? Date.now;
  const rows = createRowWriter<TailRow>({
    out: options.out,
    json: options.json,
    columns: TAIL_COLUMNS,
    toJson: tailJson,
  });
  const tokens = options.shardIds.map((id) => client.subscribe(id));
  const onAbort = () => void client.close();
  signal.addEventListener('abort', onAbort, { once: true });
  let diffs = 0;
  try {
    if (signal.aborted) return 0;
    for await (const ev of client.events()) {
      const row = tailRow(ev, now(), options.model);
      if (row === undefined) continue;
      await rows.write(row);
      if (row.event === 'diff') diffs++;
      if (rows.closed || (options.limit !== undefined && diffs >= options.limit)) break;
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    for (const t of tokens) t.release();
    await client.close();
  }
  return diffs;
}

interface TailFlags extends OutputFlags {
  pubsub: string;
  decode?: boolean | undefined;
  model: string;
  callerId: string;
  subjectPrefix?: string | undefined;
  authTokenFile?: string | undefined;
}

function openClient(flags: TailFlags, authToken: string | undefined): PubSubClient {
  const url = flags.pubsub;
  try {
    if (/^(nats|tls):\/\//i.test(url)) {
      return createPubSubClient(
        createNatsTransport({ url, callerId: flags.callerId, subjectPrefix: flags.subjectPrefix }),
      );
    }
    if (flags.subjectPrefix !== undefined) {
      throw new CliError('invalid_argument', '--subject-prefix is for nats:// URLs only');
    }
    return createPubSubClient(createGrpcTransport({ url, callerId: flags.callerId, authToken }));
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError('invalid_argument', `--pubsub: ${(err as Error).message}`, { cause: err });
  }
}

/** Registers `tail` on the program. */
export function registerTail(program: Command): void {
  const command = program
    .command('tail')
    .description("print shards' diffs as they arrive over pubsub (gRPC broker or NATS)")
    .argument('<shard...>', 'shard ids to subscribe to', collectShardArgs)
    .addOption(
      new Option(
        '--pubsub <url>',
        "grpc://HOST:PORT (a broker), grpcs://…, unix:/path/to.sock (a broker's socket) or nats://HOST:PORT",
      )
        .env('PERSIST_PUBSUB_PUBSUB')
        .makeOptionMandatory(),
    )
    .addOption(new Option('--decode', 'decode each diff with --model and print it as JSON'))
    .addOption(
      new Option('--model <name>', 'the state model for --decode')
        .choices(Object.keys(CLI_MODELS))
        .default(DEFAULT_CLI_MODEL),
    )
    .addOption(
      new Option('--caller-id <id>', 'sent as persist-pubsub-caller-id').default(TAIL_CALLER_ID),
    )
    .addOption(
      new Option(
        '--auth-token-file <path>',
        `file holding the broker's bearer token, sent as "authorization: Bearer <token>" (or the token itself in ${AUTH_TOKEN_ENV}); a scoped token (--auth-tokens-file) shows a "refused" line for each shard outside its scope`,
      ).env('PERSIST_PUBSUB_AUTH_TOKEN_FILE'),
    )
    .addOption(
      new Option('--subject-prefix <prefix>', 'NATS subject prefix (nats:// only)').env(
        'PERSIST_PUBSUB_BRIDGE_SUBJECT_PREFIX',
      ),
    )
    .addHelpText(
      'after',
      `
LATENCY is now minus the message's stamp: the broker's forwarding time (gRPC), the sender's
time (NATS). Pubsub may drop diffs; a "gap" line says so (Consensus has every version). A "refused" line: the broker does not accept that shard (its id, or a token's scope), so nothing will arrive for it.
Nothing is replayed: only diffs pushed after the subscription are shown.
Ctrl-C exits 0. Exit code 2: bad flags.`,
    );
  addOutputOptions(command, 'diffs');
  command.action((shardIds: string[], flags: TailFlags) =>
    runCommand('tail', async () => {
      let authToken: string | undefined;
      try {
        authToken = await readAuthToken(flags.authTokenFile, process.env);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        throw new CliError('invalid_argument', err.message, { cause: err });
      }
      const client = openClient(flags, authToken);
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      void (async () => {
        for await (const s of client.statusChanges()) {
          const text = describeStatus(s, flags.pubsub);
          if (text !== undefined) console.error(text);
        }
      })();
      try {
        await runTail({
          client,
          shardIds,
          out: process.stdout,
          json: flags.json === true,
          limit: flags.limit,
          model: flags.decode === true ? CLI_MODELS[flags.model] : undefined,
          signal: stop.signal,
        });
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    }),
  );
}
