/**
 * Keeps a `Flags` in step with a JSON file (`{"persist_pubsub_client_enabled": false, ...}`).
 * The file is checked every `pollIntervalMs` (stat only: size, mtime, inode, so an atomic
 * rename is seen too) rather than by `fs.watch`, whose events are unreliable across platforms
 * and editors; at the 25 ms default a change is applied well within the 100 ms budget.
 *
 * A file that cannot be read, parsed or validated is rejected as a whole, logged and counted;
 * the previous values stay. A flag removed from the file returns to its default. A missing file
 * means "no overrides".
 */
import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import { ClientError } from './errors.js';
import { FLAG_SPECS, type FlagName, type Flags, parseFlags } from './flags.js';

export interface WatchFlagsFileOptions {
  /** How often the file is checked, in ms. @default 25 */
  pollIntervalMs?: number | undefined;
  logger?: Logger | undefined;
  /** Called with every rejected reload (also logged at error). */
  onError?: ((err: Error) => void) | undefined;
  /** Called after every applied reload. */
  onReload?: (() => void) | undefined;
}

export interface FlagsFileWatcher {
  /** Re-reads the file now (also what the poll does when it sees a change). */
  reload(): void;
  /** Stops watching. Idempotent. */
  close(): void;
}

const DEFAULT_POLL_INTERVAL_MS = 25;

export function watchFlagsFile(
  flags: Flags,
  path: string,
  options: WatchFlagsFileOptions = {},
): FlagsFileWatcher {
  const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  if (!Number.isInteger(pollIntervalMs) || pollIntervalMs < 1) {
    throw new ClientError('invalid_argument', 'pollIntervalMs must be an integer >= 1', {
      field: 'pollIntervalMs',
    });
  }
  const log = options.logger?.child({ component: 'flags-file', path });
  let fromFile = new Set<FlagName>();
  let lastStamp = '';

  const stamp = (): string => {
    try {
      const s = statSync(path, { bigint: true });
      return `${s.ino}:${s.size}:${s.mtimeNs}`;
    } catch {
      return 'missing';
    }
  };

  const reload = (): void => {
    lastStamp = stamp();
    try {
      let parsed: Record<string, unknown> = {};
      if (lastStamp !== 'missing') {
        const text = readFileSync(path, 'utf8');
        const json: unknown = text.trim() === '' ? {} : JSON.parse(text);
        if (typeof json !== 'object' || json === null || Array.isArray(json)) {
          throw new ClientError('invalid_argument', 'the flags file must hold a JSON object');
        }
        parsed = parseFlags(json as Record<string, unknown>);
      }
      const update: Record<string, unknown> = { ...parsed };
      for (const name of fromFile) {
        if (!(name in parsed)) update[name] = FLAG_SPECS[name].default;
      }
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

  reload();
  const timer = setInterval(() => {
    if (stamp() !== lastStamp) reload();
  }, pollIntervalMs);
  timer.unref();
  return {
    reload,
    close: () => clearInterval(timer),
  };
}
