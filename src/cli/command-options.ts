/**
 * What the inspection commands (`shards`, `connections`, `keys`, `inspect`, `tail`) share:
 * the `--json` and `--limit` flags, usage errors exiting 2 (as `broker` does), and one action
 * wrapper that prints a failure as `persist-pubsub CMD: message` and exits 1.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { parseShardId, type ShardId } from '../protocol/index.js';
import { CliError } from './cli-error.js';
import { EXIT_USAGE } from './config/config-error.js';
import { integerIn } from './config/parse-values.js';

export interface OutputFlags {
  json?: boolean | undefined;
  limit?: number | undefined;
}

/** Adds `--json` and `--limit`, and makes a usage error exit 2. */
export function addOutputOptions(command: Command, what: string): Command {
  return command
    .addOption(new Option('--json', `one JSON object per line instead of a table`))
    .addOption(
      new Option('--limit <n>', `stop after this many ${what}`).argParser(
        integerIn(1, Number.MAX_SAFE_INTEGER),
      ),
    )
    .exitOverride((err) => {
      process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
    });
}

/**
 * Runs a command body: a `CliError` (or any other error) is printed on stderr and the process
 * exits 1 (2 for `invalid_argument`); success exits 0 once stdout is flushed.
 */
export async function runCommand(name: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`persist-pubsub ${name}: ${message}`);
    process.exitCode = err instanceof CliError && err.code === 'invalid_argument' ? EXIT_USAGE : 1;
  }
}

/** Yields at most `limit` items of `items` (all of them without a limit), then stops it. */
export async function* take<T>(items: AsyncIterable<T>, limit: number | undefined) {
  if (limit === undefined) {
    yield* items;
    return;
  }
  let n = 0;
  if (limit <= 0) return;
  for await (const item of items) {
    yield item;
    if (++n >= limit) return;
  }
}

/** A shard id argument, checked by the one shard id rule (`protocol/shard-id.ts`); exit 2. */
export function parseShardArg(value: string): ShardId {
  const r = parseShardId(value);
  if (!r.ok) throw new InvalidArgumentError(r.detail);
  return r.shardId;
}

/** `parseShardArg` for a variadic argument: collects each checked id. */
export function collectShardArgs(value: string, previous: ShardId[] | undefined): ShardId[] {
  return [...(previous ?? []), parseShardArg(value)];
}
