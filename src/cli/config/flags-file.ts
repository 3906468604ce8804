/**
 * The broker's runtime flags file (`--flags-file`): JSON such as `{ "forwardPushes": false }`.
 * Its flags lie over the command-line ones (a key left out keeps the command-line value). It is
 * read at start (an invalid file then is a configuration error), and again whenever it changes
 * on disk and on demand (SIGHUP). A file that cannot be read or parsed later is rejected with
 * one clear log line and the flags in force stay as they were.
 *
 * Change detection watches the file's directory (so an editor's write-to-temp-and-rename is
 * seen) and also polls the file's mtime as a fallback for filesystems without inotify.
 */
import { type FSWatcher, type StatWatcher, unwatchFile, watch, watchFile } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import type { BrokerFlags } from '../../broker/index.js';

/** How often the fallback poll stats the file, in ms. */
export const FLAGS_FILE_POLL_INTERVAL_MS = 1000;
/** Events within this window are read once, in ms (editors write in several steps). */
export const FLAGS_FILE_DEBOUNCE_MS = 20;
/** A flags file larger than this is rejected, in bytes. */
export const MAX_FLAGS_FILE_BYTES = 64 * 1024;

const KNOWN: Record<keyof BrokerFlags, 'boolean'> = { forwardPushes: 'boolean' };

export type FlagsParseResult =
  | { ok: true; flags: Partial<BrokerFlags> }
  | { ok: false; message: string };

/** Parses a flags file's text; every rejection says why. */
export function parseFlagsFile(text: string): FlagsParseResult {
  if (text.length > MAX_FLAGS_FILE_BYTES) {
    return { ok: false, message: `larger than ${MAX_FLAGS_FILE_BYTES} bytes` };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, message: `not JSON: ${(err as Error).message}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, message: 'expected a JSON object such as {"forwardPushes": true}' };
  }
  const flags: Partial<BrokerFlags> = {};
  for (const [key, v] of Object.entries(value)) {
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

export interface FlagsFileWatcherOptions {
  path: string;
  /** The flags to lay the file's flags over (the command-line ones). */
  base: BrokerFlags;
  /** The text that was already applied at start, so an unchanged file is not re-applied. */
  initialText?: string | undefined;
  /** Receives the effective flags after every accepted change. */
  apply: (flags: BrokerFlags) => void;
  logger: Logger;
  /** @default FLAGS_FILE_POLL_INTERVAL_MS */
  pollIntervalMs?: number | undefined;
}

export interface FlagsFileWatcher {
  /** Reads the file now (SIGHUP); resolves once applied or rejected. Never rejects. */
  reload(options?: { signal?: AbortSignal | undefined }): Promise<void>;
  /** Stops watching. Idempotent. */
  close(): void;
}

/** Watches the flags file and applies each valid change; never throws after start. */
export function watchFlagsFile(options: FlagsFileWatcherOptions): FlagsFileWatcher {
  const { path, base, apply } = options;
  const logger = options.logger.child({ component: 'flags-file' });
  const name = basename(path);
  let lastText = options.initialText;
  let chain: Promise<void> = Promise.resolve();
  let debounce: NodeJS.Timeout | undefined;
  let closed = false;

  const readOnce = async () => {
    if (closed) return;
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A rename-into-place briefly leaves no file; the next event reads the new one.
      logger.warn({ path, code }, 'flags file unreadable; keeping the flags in force');
      lastText = undefined;
      return;
    }
    if (text === lastText) return;
    lastText = text;
    const parsed = parseFlagsFile(text);
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

  const reload = () => {
    chain = chain.then(readOnce, readOnce);
    return chain;
  };

  const schedule = () => {
    if (closed) return;
    if (debounce !== undefined) clearTimeout(debounce);
    debounce = setTimeout(() => {
      debounce = undefined;
      void reload();
    }, FLAGS_FILE_DEBOUNCE_MS);
    debounce.unref();
  };

  let dirWatcher: FSWatcher | undefined;
  try {
    dirWatcher = watch(dirname(path), { persistent: false }, (_event, filename) => {
      if (filename === null || filename === name) schedule();
    });
    dirWatcher.on('error', (err) => {
      logger.warn({ err, path }, 'flags file directory watch failed; polling only');
      dirWatcher?.close();
    });
  } catch (err) {
    logger.warn({ err, path }, 'cannot watch the flags file directory; polling only');
  }
  const statWatcher: StatWatcher = watchFile(
    path,
    { persistent: false, interval: options.pollIntervalMs ?? FLAGS_FILE_POLL_INTERVAL_MS },
    schedule,
  );

  return {
    reload: () => reload(),
    close() {
      if (closed) return;
      closed = true;
      if (debounce !== undefined) clearTimeout(debounce);
      dirWatcher?.close();
      statWatcher.removeAllListeners();
      unwatchFile(path, schedule);
    },
  };
}
