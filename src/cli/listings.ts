/**
 * `persist-pubsub shards` and `persist-pubsub connections`: what a broker carries, from its
 * admin listings, every page followed to the end (as `kubectl get` does), streamed one page at
 * a time so any count fits in memory. A table by default, `--json` lines for scripts.
 */
import type { Writable } from 'node:stream';
import { type Command, Option } from 'commander';
import type { ConnectionJson, ShardJson } from '../broker/index.js';
import { DEFAULT_ADMIN_PAGE_SIZE, listAdmin, parseAdminUrl } from './admin-listing.js';
import { addOutputOptions, type OutputFlags, runCommand, take } from './command-options.js';
import { integerIn } from './config/parse-values.js';
import { type Column, createRowWriter } from './output.js';

/** Where `--admin` points by default: the broker's default `--admin-listen`. */
export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:6880';

interface ListingFlags extends OutputFlags {
  admin: string;
  pageSize: number;
}

const SHARD_COLUMNS: readonly Column<ShardJson>[] = [
  { header: 'SHARD', width: 38, value: (s) => s.shard_id },
  { header: 'SUBSCRIBERS', width: 11, align: 'right', value: (s) => String(s.subscribers) },
  { header: 'LAST SEQNO', width: 10, align: 'right', value: (s) => s.last_seqno ?? '-' },
];

/** Seconds, minutes, hours or days, like `kubectl get`'s AGE column. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 2 * 3600) return `${Math.floor(s / 60)}m`;
  if (s < 2 * 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

function connectionColumns(now: () => number): readonly Column<ConnectionJson>[] {
  return [
    { header: 'CONNECTION', width: 12, value: (c) => c.conn_id },
    { header: 'CALLER', width: 16, value: (c) => c.caller_id },
    { header: 'REMOTE', width: 21, value: (c) => c.remote_address },
    { header: 'AGE', width: 5, align: 'right', value: (c) => formatAge(now() - c.connected_at_ms) },
    { header: 'SUBS', width: 6, align: 'right', value: (c) => String(c.subscriptions) },
    { header: 'QUEUED', width: 6, align: 'right', value: (c) => String(c.queue_messages) },
    { header: 'QUEUED BYTES', width: 12, align: 'right', value: (c) => String(c.queue_bytes) },
    { header: 'DROPPED', width: 7, align: 'right', value: (c) => String(c.dropped) },
  ];
}

/** Prints every item of one listing; returns how many were printed. */
export async function printListing<T>(options: {
  admin: string;
  path: string;
  key: string;
  pageSize?: number | undefined;
  limit?: number | undefined;
  json: boolean;
  columns: readonly Column<T>[];
  out: Writable;
  signal?: AbortSignal | undefined;
  fetch?: typeof globalThis.fetch | undefined;
}): Promise<number> {
  const rows = createRowWriter<T>({
    out: options.out,
    json: options.json,
    columns: options.columns,
    toJson: (r) => r,
  });
  let n = 0;
  const items = listAdmin<T>(options);
  for await (const item of take(items, options.limit)) {
    await rows.write(item);
    n++;
    if (rows.closed) break;
  }
  return n;
}

function addListing<T>(
  program: Command,
  name: string,
  description: string,
  path: string,
  key: string,
  columns: () => readonly Column<T>[],
): void {
  const command = program
    .command(name)
    .description(description)
    .addOption(
      new Option('--admin <url>', "the broker's admin endpoint")
        .env('PERSIST_PUBSUB_ADMIN')
        .default(DEFAULT_ADMIN_URL),
    )
    .addOption(
      new Option('--page-size <n>', 'items per admin request')
        .argParser(integerIn(1, 10_000))
        .default(DEFAULT_ADMIN_PAGE_SIZE),
    )
    .addHelpText(
      'after',
      `
Follows the listing's page tokens to the end, one page in memory at a time; the broker lists
in id order, so a listing taken while ${key} come and go may miss or repeat some of them.
Exit code 1: the admin endpoint cannot be reached or answers an error; 2: bad flags.`,
    );
  addOutputOptions(command, key);
  command.action((flags: ListingFlags) =>
    runCommand(name, async () => {
      const n = await printListing<T>({
        admin: parseAdminUrl(flags.admin),
        path,
        key,
        pageSize: flags.pageSize,
        limit: flags.limit,
        json: flags.json === true,
        columns: columns(),
        out: process.stdout,
      });
      if (n === 0 && flags.json !== true) console.error(`no ${key}`);
    }),
  );
}

/** Registers `shards` and `connections` on the program. */
export function registerListings(program: Command): void {
  addListing<ShardJson>(
    program,
    'shards',
    'list the shards a broker carries: subscribers and last seqno seen',
    '/v1/shards',
    'shards',
    () => SHARD_COLUMNS,
  );
  addListing<ConnectionJson>(
    program,
    'connections',
    "list a broker's connections: caller, remote address, age, subscriptions, queue, drops",
    '/v1/connections',
    'connections',
    () => connectionColumns(Date.now),
  );
}
