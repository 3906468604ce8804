/**
 * The broker's runtime flags file (`--flags-file`): JSON such as `{ "forwardPushes": false }`.
 * Its flags lie over the command-line ones (a key left out keeps the command-line value). It is
 * read at start (an invalid file then is a configuration error), and again whenever it changes
 * on disk and on demand (SIGHUP). A file that cannot be read or parsed later is rejected with
 * one clear log line and the flags in force stay as they were; so does a missing or empty one.
 *
 * The file format and the change detection (a `stat` poll; see src/util/flags-file.ts for why
 * not `fs.watch`) are the ones the SDK's flags file uses; only the flags are the broker's.
 */
import type { Logger } from 'pino';
import type { BrokerFlags } from '../../broker/index.js';
import {
  type Clock,
  contentProblemCode,
  type FlagsFileContent,
  parseFlagsFile,
  watchFlagsFileContent,
} from '../../util/index.js';

const KNOWN: Record<keyof BrokerFlags, 'boolean'> = { forwardPushes: 'boolean' };

export type BrokerFlagsParseResult =
  | { ok: true; flags: Partial<BrokerFlags> }
  | { ok: false; message: string };

/** Parses a broker flags file's text; every rejection says why. */
export function parseBrokerFlagsFile(text: string): BrokerFlagsParseResult {
  const file = parseFlagsFile(text);
  if (!file.ok) return file;
  const flags: Partial<BrokerFlags> = {};
  for (const [key, v] of Object.entries(file.values)) {
    const type = (KNOWN as Record<string, string>)[key];
    if (type === undefined) {
      return {
        ok: false,
        message: `unknown flag ${JSON.stringify(key)}; known: ${Object.keys(KNOWN).join(', ')}`,
      };
    }
    if (typeof v !== type) return { ok: false, message: `${key} must be a ${type}` };
    (flags as Record<string, unknown>)[key] = v;
  }
  return { ok: true, flags };
}

export interface BrokerFlagsFileWatcherOptions {
  path: string;
  /** The flags to lay the file's flags over (the command-line ones). */
  base: BrokerFlags;
  /** The text that was already applied at start, so an unchanged file is not re-applied. */
  initialText?: string | undefined;
  /** Receives the effective flags after every accepted change. */
  apply: (flags: BrokerFlags) => void;
  logger: Logger;
  /** @default DEFAULT_FLAGS_FILE_POLL_INTERVAL_MS (src/util) */
  pollIntervalMs?: number | undefined;
  /** The poll timer runs on it. @default systemClock */
  clock?: Clock | undefined;
}

export interface BrokerFlagsFileWatcher {
  /** Reads the file now (SIGHUP); resolves once applied or rejected. Never rejects. */
  reload(): Promise<void>;
  /** Stops watching. Idempotent. */
  close(): void;
}

/** Watches the flags file and applies each valid change; never throws after start. */
export function watchBrokerFlagsFile(
  options: BrokerFlagsFileWatcherOptions,
): BrokerFlagsFileWatcher {
  const { path, base, apply } = options;
  const logger = options.logger.child({ component: 'flags-file' });

  const onChange = (content: FlagsFileContent): void => {
    if (content.kind !== 'text') {
      // A rename-into-place briefly leaves no file; the next change reads the new one.
      logger.warn(
        { path, code: contentProblemCode(content) },
        'flags file unreadable; keeping the flags in force',
      );
      return;
    }
    const parsed = parseBrokerFlagsFile(content.text);
    if (!parsed.ok) {
      logger.error(
        { path, reason: parsed.message },
        `flags file rejected (${parsed.message}); keeping the flags in force`,
      );
      return;
    }
    const flags = { ...base, ...parsed.flags };
    apply(flags);
    logger.info({ path, flags }, 'flags reloaded');
  };

  const watcher = watchFlagsFileContent({
    path,
    onChange,
    initialText: options.initialText,
    pollIntervalMs: options.pollIntervalMs,
    clock: options.clock,
  });
  return { reload: () => watcher.check(), close: () => watcher.close() };
}
