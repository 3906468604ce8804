/**
 * `persist-pubsub keys` and `persist-pubsub inspect`: a read-only look into a Consensus store,
 * like `etcdctl get --prefix --keys-only` and `etcdctl get`. Both work on every backend
 * `openConsensus` opens (SQLite, Postgres/CockroachDB, Redis/Valkey; `mem:` is a new empty
 * store, so only useful in-process).
 *
 * `keys` streams the paginated `listKeys` one page at a time, never every key in memory, and
 * passes on its soft guarantees (no order; a key may repeat across pages; a page may be empty).
 * `inspect` rebuilds one shard's state from its log (`inspectShard`) and prints it as JSON with
 * its seqno, what is retained and where the newest rollup is.
 */

import { existsSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type Consensus, MAX_LIST_PAGE_SIZE, openConsensus } from '../consensus/index.js';
import { MAX_SEQNO } from '../protocol/index.js';
import { inspectShard, type StateModel } from '../shard-state/index.js';
import { CliError } from './cli-error.js';
import {
  addOutputOptions,
  type OutputFlags,
  parseShardArg,
  runCommand,
  take,
} from './command-options.js';
import { EXIT_USAGE } from './config/config-error.js';
import { integerIn } from './config/parse-values.js';
import { createRowWriter, toJsonText } from './output.js';
import { CLI_MODELS, DEFAULT_CLI_MODEL } from './state-models.js';

/** Keys asked for per `listKeys` page. */
export const DEFAULT_KEYS_PAGE_SIZE = 1000;

function consensusOption(): Option {
  return new Option(
    '--consensus <url>',
    'the Consensus store: sqlite:PATH, postgres://…, redis://…',
  )
    .env('PERSIST_PUBSUB_CONSENSUS')
    .makeOptionMandatory();
}

/**
 * Opens the store for reading. A SQLite file that does not exist is an error here, not a new
 * empty store: a mistyped path must not look like a store without shards.
 */
async function withConsensus<T>(url: string, body: (c: Consensus) => Promise<T>): Promise<T> {
  const sqlitePath = /^sqlite:(?:\/\/)?(.+)$/i.exec(url)?.[1];
  if (sqlitePath !== undefined && sqlitePath !== ':memory:' && !existsSync(sqlitePath)) {
    throw new CliError('not_found', `--consensus: no SQLite file at ${sqlitePath}`);
  }
  let consensus: Consensus;
  try {
    consensus = await openConsensus(url);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new CliError(
      code === 'invalid_argument' ? 'invalid_argument' : 'unreachable',
      `--consensus: ${(err as Error).message}`,
      { cause: err },
    );
  }
  try {
    return await body(consensus);
  } finally {
    await consensus.close().catch(() => undefined);
  }
}

/** Every key of `consensus`, page by page (one page in memory at a time). */
export async function* listAllKeys(
  consensus: Consensus,
  options: { pageSize?: number | undefined; signal?: AbortSignal | undefined } = {},
): AsyncGenerator<string> {
  let pageToken: string | undefined;
  do {
    const page = await consensus.listKeys({
      pageSize: options.pageSize ?? DEFAULT_KEYS_PAGE_SIZE,
      pageToken,
      signal: options.signal,
    });
    yield* page.keys;
    pageToken = page.nextPageToken;
  } while (pageToken !== undefined);
}

/** Prints the keys of `consensus`; returns how many were printed. */
export async function printKeys(
  consensus: Consensus,
  options: { out: Writable; json: boolean; limit?: number | undefined; pageSize?: number },
): Promise<number> {
  const rows = createRowWriter<string>({
    out: options.out,
    json: options.json,
    columns: [{ header: 'KEY', width: 0, value: (k) => k }],
    toJson: (key) => ({ key }),
  });
  let n = 0;
  for await (const key of take(listAllKeys(consensus, options), options.limit)) {
    await rows.write(key);
    n++;
    if (rows.closed) break;
  }
  return n;
}

interface KeysFlags extends OutputFlags {
  consensus: string;
  pageSize: number;
}

interface InspectFlags {
  consensus: string;
  at?: bigint | undefined;
  model: string;
}

function parseSeqno(value: string): bigint {
  if (!/^[0-9]{1,19}$/.test(value) || BigInt(value) > MAX_SEQNO) {
    throw new InvalidArgumentError('expected a seqno in [0, 2^63-1]');
  }
  return BigInt(value);
}

/** Registers `keys` and `inspect` on the program. */
export function registerConsensusCommands(program: Command): void {
  const keys = program
    .command('keys')
    .description('list every key (shard id) in a Consensus store, streamed page by page')
    .addOption(consensusOption())
    .addOption(
      new Option('--page-size <n>', 'keys per listKeys page')
        .argParser(integerIn(1, MAX_LIST_PAGE_SIZE))
        .default(DEFAULT_KEYS_PAGE_SIZE),
    )
    .addHelpText(
      'after',
      `
Keys come from Consensus listKeys, whose guarantees are soft (as AIP-158 allows): keys come in
no particular order, a key may be printed more than once (across pages, e.g. while shards are
written), and keys created or deleted during the listing may or may not appear. Only one page
is in memory at a time; pipe through "sort -u" for an ordered, deduplicated list.
Exit code 1: the store cannot be read; 2: bad flags.`,
    );
  addOutputOptions(keys, 'keys');
  keys.action((flags: KeysFlags) =>
    runCommand('keys', () =>
      withConsensus(flags.consensus, async (c) => {
        const n = await printKeys(c, {
          out: process.stdout,
          json: flags.json === true,
          limit: flags.limit,
          pageSize: flags.pageSize,
        });
        if (n === 0 && flags.json !== true) console.error('no keys');
      }),
    ),
  );

  program
    .command('inspect')
    .description(
      "print a shard's state from Consensus as JSON: seqno, retained versions, newest rollup",
    )
    .argument('<shard>', 'the shard id (the Consensus key)', parseShardArg)
    .addOption(consensusOption())
    .addOption(
      new Option(
        '--at <seqno>',
        'an older version, if still retained (default: the head)',
      ).argParser(parseSeqno),
    )
    .addOption(
      new Option('--model <name>', 'the state model the shard was written with')
        .choices(Object.keys(CLI_MODELS))
        .default(DEFAULT_CLI_MODEL),
    )
    .addHelpText(
      'after',
      `
The state is rebuilt from the shard's log: its newest rollup at or before the seqno, then each
later diff. Versions truncated away (behind the earliest retained rollup) cannot be shown.
Exit code 1: no such shard or version, or the log cannot be read; 2: bad flags.`,
    )
    .exitOverride((err) => {
      process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
    })
    .action((shardId: string, flags: InspectFlags) =>
      runCommand('inspect', () =>
        withConsensus(flags.consensus, async (c) => {
          const model = CLI_MODELS[flags.model] as StateModel<unknown, unknown>;
          let v: Awaited<ReturnType<typeof inspectShard<unknown, unknown>>>;
          try {
            v = await inspectShard(c, shardId, model, { atSeqno: flags.at });
          } catch (err) {
            const code = (err as { code?: unknown }).code;
            if (code === 'not_found' || code === 'corrupt_log') {
              throw new CliError(code, (err as Error).message, { cause: err });
            }
            throw err;
          }
          const out = {
            shard_id: v.shardId,
            model: flags.model,
            seqno: v.seqno,
            wall_time: new Date(v.wallTimeMs).toISOString(),
            retained: {
              versions: v.retained.versions,
              earliest_seqno: v.retained.earliestSeqno,
              head_seqno: v.retained.headSeqno,
              last_rollup_seqno: v.retained.lastRollupSeqno ?? null,
            },
            rebuilt_from_rollup_seqno: v.fromRollupSeqno,
            state: v.state,
          };
          process.stdout.write(`${toJsonText(out, 2)}\n`);
        }),
      ),
    );
}
