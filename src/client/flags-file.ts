/**
 * Keeps a `Flags` in step with a JSON file (`{"persist_pubsub_client_enabled": false, ...}`),
 * on the shared flags-file watcher of src/util (a `stat` poll, every 50 ms by default: see
 * there for why a poll and not `fs.watch`), so a change applies within the 100 ms budget.
 *
 * A file that cannot be read, parsed or validated is rejected as a whole, logged and counted;
 * the previous values stay. A flag removed from the file returns to its default. A missing file
 * means "no overrides". An empty file (a write caught half-way) changes nothing.
 */
import type { Logger } from 'pino';
import {
  type Clock,
  type FlagsFileContent,
  parseFlagsFile,
  watchFlagsFileContent,
} from '../util/index.js';
import { ClientError } from './errors.js';
import { FLAG_SPECS, type FlagName, type Flags, parseFlags } from './flags.js';

export interface WatchFlagsFileOptions {
  /** How often the file is checked, in ms. @default 50 */
  pollIntervalMs?: number | undefined;
  logger?: Logger | undefined;
  /** Called with every rejected reload (also logged at error). */
  onError?: ((err: Error) => void) | undefined;
  /** Called after every applied reload. */
  onReload?: (() => void) | undefined;
  /** The poll timer runs on it. @default systemClock */
  clock?: Clock | undefined;
}

export interface FlagsFileWatcher {
  /** Re-reads the file now; resolves once its values are applied or rejected. */
  reload(): Promise<void>;
  /** Stops watching. Idempotent. */
  close(): void;
}

/** Watches `path` and applies its flags to `flags`; the file's values hold on return. */
export function watchFlagsFile(
  flags: Flags,
  path: string,
  options: WatchFlagsFileOptions = {},
): FlagsFileWatcher {
  const { pollIntervalMs } = options;
  if (pollIntervalMs !== undefined && (!Number.isInteger(pollIntervalMs) || pollIntervalMs < 1)) {
    throw new ClientError('invalid_argument', 'pollIntervalMs must be an integer >= 1', {
      field: 'pollIntervalMs',
    });
  }
  const log = options.logger?.child({ component: 'flags-file', path });
  let fromFile = new Set<FlagName>();

  /** The flag values in `content`; throws `ClientError` naming why the file is refused. */
  const valuesOf = (content: FlagsFileContent): Record<string, unknown> => {
    if (content.kind === 'missing') return {};
    if (content.kind === 'unreadable') throw content.error;
    if (content.kind === 'empty') return {};
    const file = parseFlagsFile(content.text);
    if (!file.ok) throw new ClientError('invalid_argument', `flags file ${path}: ${file.message}`);
    return parseFlags(file.values);
  };

  const apply = (content: FlagsFileContent): void => {
    if (content.kind === 'empty') {
      log?.warn('flags file is empty; previous values stay (write {} for no overrides)');
      return;
    }
    try {
      const parsed = valuesOf(content);
      const update: Record<string, unknown> = { ...parsed };
      for (const name of fromFile) {
        if (!(name in parsed)) update[name] = FLAG_SPECS[name].default;
      }
      // Validated as a whole: a combination the flags refuse changes nothing either.
      flags.set(update);
      fromFile = new Set(Object.keys(parsed) as FlagName[]);
      log?.debug({ flags: parsed }, 'flags file applied');
      options.onReload?.();
    } catch (cause) {
      const err =
        cause instanceof ClientError
          ? cause
          : new ClientError('invalid_argument', `flags file ${path}: ${String(cause)}`, { cause });
      log?.error({ err }, 'flags file rejected; previous values stay');
      options.onError?.(err);
    }
  };

  const watcher = watchFlagsFileContent({
    path,
    onChange: apply,
    pollIntervalMs,
    clock: options.clock,
  });
  return {
    reload: () => watcher.check(),
    close: () => watcher.close(),
  };
}
