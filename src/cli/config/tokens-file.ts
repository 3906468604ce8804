/**
 * The broker's scoped tokens file (`--auth-tokens-file`; README "Operating: auth"):
 *
 *     { "tokens": [
 *         { "name": "writer-a", "token": "…", "publish": ["s*"], "subscribe": ["s*"] },
 *         { "name": "dashboard", "token": "…", "subscribe": ["tenant-a/*"] } ] }
 *
 * Each token's name is its streams' caller id; `publish` and `subscribe` are shard-id patterns
 * (an exact id, or a prefix and a trailing `*`; the broker's `shard-patterns.ts`). At most
 * `MAX_TOKENS_FILE_BYTES`. Read at start (a bad file then is a configuration error, exit 2),
 * and again whenever it changes on disk and on SIGHUP: a file that cannot be read or is invalid
 * then keeps the tokens in force, with one log line and
 * `persist_pubsub_server_auth_tokens_reloads_total{result}` (`applied`, `rejected`,
 * `unreadable`). Change detection is the flags file's (`stat` poll: src/util/flags-file.ts).
 */
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { compileTokenGrants, type TokenGrant } from '../../broker/index.js';
import {
  type Clock,
  contentProblemCode,
  type FlagsFileContent,
  parseJsonObjectFile,
  watchFlagsFileContent,
} from '../../util/index.js';

/** A tokens file larger than this is refused, in bytes (some 5000 tokens with a few patterns each). */
export const MAX_TOKENS_FILE_BYTES = 1024 * 1024;

export type TokensFileParse = { ok: true; tokens: TokenGrant[] } | { ok: false; message: string };

/** Parses and validates a tokens file's text; every rejection says where and why. */
export function parseTokensFile(text: string): TokensFileParse {
  const file = parseJsonObjectFile(
    text,
    MAX_TOKENS_FILE_BYTES,
    'a JSON object { "tokens": [...] }',
  );
  if (!file.ok) return file;
  const extra = Object.keys(file.values).filter((k) => k !== 'tokens');
  if (extra.length > 0) {
    return { ok: false, message: `unknown field ${JSON.stringify(extra[0])}; known: tokens` };
  }
  const tokens = file.values.tokens;
  try {
    compileTokenGrants(tokens);
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
  return { ok: true, tokens: tokens as TokenGrant[] };
}

export interface TokensFileWatcherOptions {
  path: string;
  /** The text that was already applied at start, so an unchanged file is not re-applied. */
  initialText?: string | undefined;
  /** Puts the tokens in force (`Broker.setTokens`); a throw rejects the file. */
  apply: (tokens: TokenGrant[]) => void;
  logger: Logger;
  /** Where the reload counter goes (the broker's). */
  registry: Registry;
  /** @default DEFAULT_FLAGS_FILE_POLL_INTERVAL_MS (src/util) */
  pollIntervalMs?: number | undefined;
  /** The poll timer runs on it. @default systemClock */
  clock?: Clock | undefined;
}

export interface TokensFileWatcher {
  /** Reads the file now (SIGHUP); resolves once applied or rejected. Never rejects. */
  reload(): Promise<void>;
  /** Stops watching. Idempotent. */
  close(): void;
}

/** Watches the tokens file and applies each valid change; never throws after start. */
export function watchTokensFile(options: TokensFileWatcherOptions): TokensFileWatcher {
  const { path, apply } = options;
  const logger = options.logger.child({ component: 'tokens-file' });
  const reloads = new Counter({
    name: 'persist_pubsub_server_auth_tokens_reloads_total',
    help: 'Reloads of --auth-tokens-file, by result: applied, rejected (invalid: the tokens in force stay), unreadable (missing, empty or unreadable: they stay too).',
    labelNames: ['result'],
    registers: [options.registry],
  });
  for (const result of ['applied', 'rejected', 'unreadable']) reloads.inc({ result }, 0);

  const onChange = (content: FlagsFileContent): void => {
    if (content.kind !== 'text') {
      reloads.labels('unreadable').inc();
      logger.warn(
        { path, code: contentProblemCode(content) },
        'tokens file unreadable; keeping the tokens in force',
      );
      return;
    }
    const parsed = parseTokensFile(content.text);
    let error = parsed.ok ? undefined : parsed.message;
    if (parsed.ok) {
      try {
        apply(parsed.tokens);
      } catch (err) {
        error = (err as Error).message;
      }
    }
    if (error !== undefined) {
      reloads.labels('rejected').inc();
      logger.error(
        { path, reason: error },
        `tokens file rejected (${error}); keeping the tokens in force`,
      );
      return;
    }
    reloads.labels('applied').inc();
    logger.info({ path, tokens: parsed.ok ? parsed.tokens.length : 0 }, 'tokens reloaded');
  };

  // The flags file's watcher, with its initial text, poll interval and clock.
  const { check, close } = watchFlagsFileContent({ ...options, onChange });
  return { reload: check, close };
}
