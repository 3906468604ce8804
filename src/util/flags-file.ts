/**
 * The one flags file format and the one watcher, shared by the SDK (`watchFlagsFile` in
 * src/client: `PersistFlags`) and the broker CLI (`--flags-file`: `BrokerFlags`). What each
 * flag means and which values it takes stays with its owner; this file knows only "a JSON
 * object of flag name → value, at most 64 KiB" and "tell me when the file's text changes".
 *
 * Change detection polls `stat` (inode, size, mtime in ns) every `pollIntervalMs` rather than
 * relying on `fs.watch`: inotify does not exist on NFS and other network filesystems, and
 * a Kubernetes ConfigMap update swaps a `..data` symlink in the directory, so a watch on the
 * file (or the directory filtered by the file's name) never fires, while `stat`, which follows
 * symlinks, sees the new inode. The stat is asynchronous (a hung network mount stalls one
 * thread-pool thread, never the event loop) and one poll runs at a time. Idle cost, measured:
 * bench/results/flags-file-poll.md. At the 50 ms default a change applies well within the
 * 100 ms that a runtime flag promises.
 */
import { readFileSync, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { type Clock, systemClock, type Timer } from './clock.js';

/** A flags file larger than this is rejected, in bytes. */
export const MAX_FLAGS_FILE_BYTES = 64 * 1024;
/** How often the watcher stats the file, in ms. */
export const DEFAULT_FLAGS_FILE_POLL_INTERVAL_MS = 50;

export type FlagsFileParse =
  | { ok: true; values: Record<string, unknown> }
  | { ok: false; message: string };

/**
 * Parses a flags file's text into its flag name → value entries, unvalidated (the owner of
 * the flags validates the values). Every rejection says why.
 */
export function parseFlagsFile(text: string): FlagsFileParse {
  return parseJsonObjectFile(text, MAX_FLAGS_FILE_BYTES, 'a JSON object of flag name → value');
}

/**
 * The format under a flags file and the broker's tokens file: one JSON object of at most
 * `maxBytes`, its entries unvalidated; `expected` says what the object should be in a rejection.
 */
export function parseJsonObjectFile(
  text: string,
  maxBytes: number,
  expected: string,
): FlagsFileParse {
  if (Buffer.byteLength(text, 'utf8') > maxBytes) {
    return { ok: false, message: `larger than ${maxBytes} bytes` };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, message: `not JSON: ${(err as Error).message}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, message: `expected ${expected}` };
  }
  return { ok: true, values: value as Record<string, unknown> };
}

/** What the watcher found at the path. */
export type FlagsFileContent =
  /** The file's text, not empty. */
  | { kind: 'text'; text: string }
  /** No file (never written, removed, or between the steps of a rename). */
  | { kind: 'missing' }
  /**
   * The file is empty: most often a write caught between its truncate and its data, so it
   * is not taken as "no flags" (write `{}` for that).
   */
  | { kind: 'empty' }
  /** The file exists but cannot be read (permissions, a directory, I/O error). */
  | { kind: 'unreadable'; error: Error };

/** A short code for content that is not text (a log field): an errno code, `ENOENT`, `EMPTY`. */
export function contentProblemCode(content: Exclude<FlagsFileContent, { kind: 'text' }>): string {
  if (content.kind === 'unreadable') {
    return (content.error as NodeJS.ErrnoException).code ?? 'UNREADABLE';
  }
  return content.kind === 'missing' ? 'ENOENT' : 'EMPTY';
}

export interface FlagsFileWatcherOptions {
  path: string;
  /**
   * Called with every change of what is at `path`: a different text, or a different kind.
   * The first call happens synchronously inside `watchFlagsFileContent`, unless the file holds
   * `initialText` (the caller already applied it).
   */
  onChange: (content: FlagsFileContent) => void;
  /** The text the caller already read and applied at start. */
  initialText?: string | undefined;
  /** @default DEFAULT_FLAGS_FILE_POLL_INTERVAL_MS */
  pollIntervalMs?: number | undefined;
  /** The poll timer runs on it (unref'd). @default systemClock */
  clock?: Clock | undefined;
}

export interface FlagsFileContentWatcher {
  /**
   * Reads the file now, even if its stat looks unchanged (SIGHUP, a test), after any poll in
   * flight; resolves once `onChange` ran or nothing changed. Never rejects.
   */
  check(): Promise<void>;
  /** Stops watching; no `onChange` after this. Idempotent. */
  close(): void;
}

type Stamp = string;
const MISSING: Stamp = 'missing';

function stampOf(s: { ino: bigint; size: bigint; mtimeNs: bigint }): Stamp {
  return `${s.ino}:${s.size}:${s.mtimeNs}`;
}

function contentOfText(text: string): FlagsFileContent {
  return text.trim() === '' ? { kind: 'empty' } : { kind: 'text', text };
}

function contentOfError(err: unknown): FlagsFileContent {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
  return { kind: 'unreadable', error: err as Error };
}

function sameContent(a: FlagsFileContent | undefined, b: FlagsFileContent): boolean {
  if (a === undefined || a.kind !== b.kind) return false;
  if (a.kind === 'text' && b.kind === 'text') return a.text === b.text;
  return a.kind !== 'unreadable';
}

/**
 * Watches the file at `path` by polling its stat and reports each change of its content.
 * The first read is synchronous, so a caller's flags hold the file's values on return.
 */
export function watchFlagsFileContent(options: FlagsFileWatcherOptions): FlagsFileContentWatcher {
  const { path, onChange } = options;
  const clock = options.clock ?? systemClock;
  const intervalMs = options.pollIntervalMs ?? DEFAULT_FLAGS_FILE_POLL_INTERVAL_MS;
  let closed = false;
  let stamp: Stamp = MISSING;
  let last: FlagsFileContent | undefined =
    options.initialText === undefined ? undefined : { kind: 'text', text: options.initialText };
  let chain: Promise<void> = Promise.resolve();
  let timer: Timer | undefined;

  const report = (content: FlagsFileContent): void => {
    if (closed || sameContent(last, content)) return;
    last = content;
    onChange(content);
  };

  // Synchronous at start only: the caller is constructing, nothing else is running yet.
  try {
    stamp = stampOf(statSync(path, { bigint: true }));
  } catch {
    stamp = MISSING;
  }
  let first: FlagsFileContent;
  try {
    first = contentOfText(readFileSync(path, 'utf8'));
  } catch (err) {
    first = contentOfError(err);
  }
  report(first);

  const poll = async (force: boolean): Promise<void> => {
    if (closed) return;
    let next: Stamp;
    try {
      next = stampOf(await stat(path, { bigint: true }));
    } catch {
      next = MISSING;
    }
    if (!force && next === stamp) return;
    stamp = next;
    let content: FlagsFileContent;
    try {
      content = contentOfText(await readFile(path, 'utf8'));
    } catch (err) {
      content = contentOfError(err);
    }
    report(content);
  };

  const enqueue = (force: boolean): Promise<void> => {
    chain = chain.then(() => poll(force)).catch(() => {});
    return chain;
  };

  const arm = (): void => {
    if (closed) return;
    timer = clock.setTimer(() => {
      void enqueue(false).then(arm);
    }, intervalMs);
  };
  arm();

  return {
    check: () => enqueue(true),
    close() {
      closed = true;
      timer?.cancel();
    },
  };
}
