/**
 * Runtime feature flags: a dynamic config the client reads on every decision, so a change takes
 * effect at once (the pubsub client reacts to a change synchronously, well within 100 ms).
 * Names are the reference's (Materialize `persist-client/src/cfg.rs` / `rpc.rs` dyncfgs), with
 * the unit suffixed (`_ms`) where the reference uses a `Duration`. Everything defaults on.
 *
 * Values come from code (`set`), the environment (`flagsFromEnv`) and a watched JSON file
 * (`watchFlagsFile`). An update is validated as a whole: one bad value rejects the update with a
 * `ClientError` naming the flag, and every previous value stays.
 */
import { ClientError } from './errors.js';

export interface PersistFlags {
  /** Connect to the broker at all. Off: no stream, no pushes; readers poll. @default true */
  persist_pubsub_client_enabled: boolean;
  /** Push committed diffs to the broker. @default true */
  persist_pubsub_push_diff_enabled: boolean;
  /** Use the in-process delegate when the broker lives in this process. @default true */
  persist_pubsub_same_process_delegate_enabled: boolean;
  /** Wait after an established connection fails, in ms. @default 5000 */
  persist_pubsub_reconnect_backoff_ms: number;
  /**
   * After a GOAWAY (a draining broker), the next connection is opened without backoff after a
   * delay uniform in [0, this], in ms, so that the clients of a drained broker do not all
   * reconnect in the same millisecond. @default 250
   */
  persist_pubsub_goaway_reconnect_jitter_ms: number;
  /**
   * After a GOAWAY handover, the old connection is kept (receiving and pushing, next to the new
   * one) until the broker ends it or for this long after the new one is up, in ms, whichever
   * comes first: long enough for the other clients of the drained broker to move too, so that
   * no diff is pushed to a broker its readers have already left. @default 2000
   */
  persist_pubsub_goaway_overlap_ms: number;
  /** A connect attempt gives up after this long, in ms. @default 5000 */
  persist_pubsub_connect_attempt_timeout_ms: number;
  /** Cap of the exponential backoff between failed connect attempts, in ms. @default 60000 */
  persist_pubsub_connect_max_backoff_ms: number;
  /**
   * The reference's sender channel size, kept so that configs naming it stay valid. It bounds
   * nothing here: the sender is bounded by bytes (`persist_pubsub_client_sender_buffer_bytes`),
   * since a count says nothing about memory and a burst of small pushes is not a backlog.
   * @default 25
   */
  persist_pubsub_client_sender_channel_size: number;
  /**
   * Bytes handed to the transport that the wire has not taken yet, at most (this turn's
   * coalesced write plus what flow control or a slow socket holds back); a push that finds
   * this many waiting is dropped and counted (`reason="queue_full"`), and readers recover it
   * from Consensus. @default 4194304 (4 MiB)
   */
  persist_pubsub_client_sender_buffer_bytes: number;
  /**
   * The sender's write window, in µs: a push within this long of the previous write waits for
   * the window's end and shares one write with what follows it (fewer writes and broker
   * wake-ups per push, at up to this much latency); after an idle window it goes at once.
   * 0 writes every event-loop turn's pushes at once. @default 0
   */
  persist_pubsub_client_write_window_us: number;
  /**
   * Received events queued for an `events()` / `eventBatches()` consumer at most; more become
   * gaps (the persist client takes them synchronously, `onEvent`: nothing queued). @default 25
   */
  persist_pubsub_client_receiver_channel_size: number;
  /** A reader waiting for the next seqno first polls Consensus after this long, in ms. @default 1200 */
  persist_next_listen_batch_retryer_fixed_sleep_ms: number;
  /** Then polls after this long, in ms, doubling (shard-state `pollInitialBackoffMs`). @default 100 */
  persist_next_listen_batch_retryer_initial_backoff_ms: number;
  /** Cap of the poll interval, in ms (shard-state `pollMaxBackoffMs`). @default 16000 */
  persist_next_listen_batch_retryer_clamp_ms: number;
}

export type FlagName = keyof PersistFlags;

/** The default sender bound, `persist_pubsub_client_sender_buffer_bytes`: 4 MiB. */
export const DEFAULT_SENDER_BUFFER_BYTES = 4 * 1024 * 1024;

type FlagSpec =
  | { kind: 'boolean'; default: boolean }
  | { kind: 'number'; default: number; min: number; max: number; integer: boolean };

/** An integer flag: milliseconds (the default range, up to an hour) or a count. */
const int = (d: number, min = 0, max = 3_600_000): FlagSpec => ({
  kind: 'number',
  default: d,
  min,
  max,
  integer: true,
});

/** Checks across flags, on the merged result of an update. */
function checkCombined(f: PersistFlags): void {
  if (
    f.persist_next_listen_batch_retryer_initial_backoff_ms >
    f.persist_next_listen_batch_retryer_clamp_ms
  ) {
    throw new ClientError(
      'invalid_argument',
      'flag persist_next_listen_batch_retryer_initial_backoff_ms must not exceed persist_next_listen_batch_retryer_clamp_ms',
      { field: 'persist_next_listen_batch_retryer_initial_backoff_ms' },
    );
  }
}

/** Every flag, its type, default and valid range. */
export const FLAG_SPECS: Readonly<Record<FlagName, FlagSpec>> = {
  persist_pubsub_client_enabled: { kind: 'boolean', default: true },
  persist_pubsub_push_diff_enabled: { kind: 'boolean', default: true },
  persist_pubsub_same_process_delegate_enabled: { kind: 'boolean', default: true },
  persist_pubsub_reconnect_backoff_ms: int(5000),
  persist_pubsub_goaway_reconnect_jitter_ms: int(250),
  persist_pubsub_goaway_overlap_ms: int(2000),
  persist_pubsub_connect_attempt_timeout_ms: int(5000, 1),
  persist_pubsub_connect_max_backoff_ms: int(60_000, 1),
  persist_pubsub_client_sender_channel_size: int(25, 1, 1_000_000),
  persist_pubsub_client_sender_buffer_bytes: int(
    DEFAULT_SENDER_BUFFER_BYTES,
    4096,
    1024 * 1024 * 1024,
  ),
  persist_pubsub_client_write_window_us: int(0, 0, 100_000),
  persist_pubsub_client_receiver_channel_size: int(25, 1, 1_000_000),
  persist_next_listen_batch_retryer_fixed_sleep_ms: int(1200),
  persist_next_listen_batch_retryer_initial_backoff_ms: int(100, 1),
  persist_next_listen_batch_retryer_clamp_ms: int(16_000, 1),
};

export const FLAG_NAMES = Object.keys(FLAG_SPECS) as FlagName[];

export function defaultFlags(): PersistFlags {
  const out: Record<string, boolean | number> = {};
  for (const name of FLAG_NAMES) out[name] = FLAG_SPECS[name].default;
  return out as unknown as PersistFlags;
}

function isFlagName(name: string): name is FlagName {
  return Object.hasOwn(FLAG_SPECS, name);
}

/**
 * Validates one value; strings (from the environment) are parsed. Throws `ClientError`
 * `invalid_argument` naming the flag.
 */
export function parseFlagValue(name: string, value: unknown): boolean | number {
  if (!isFlagName(name)) {
    throw new ClientError('invalid_argument', `unknown flag ${JSON.stringify(name)}`, {
      field: name,
    });
  }
  const spec = FLAG_SPECS[name];
  if (spec.kind === 'boolean') {
    if (typeof value === 'boolean') return value;
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    throw new ClientError(
      'invalid_argument',
      `flag ${name} must be a boolean (true/false), got ${JSON.stringify(value)}`,
      { field: name },
    );
  }
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (
    typeof n !== 'number' ||
    !Number.isFinite(n) ||
    (spec.integer && !Number.isInteger(n)) ||
    n < spec.min ||
    n > spec.max
  ) {
    throw new ClientError(
      'invalid_argument',
      `flag ${name} must be ${spec.integer ? 'an integer' : 'a number'} in [${spec.min}, ${spec.max}], got ${JSON.stringify(value)}`,
      { field: name },
    );
  }
  return n;
}

/** Validates a whole update; throws on the first bad entry. */
export function parseFlags(update: Record<string, unknown>): Partial<PersistFlags> {
  if (typeof update !== 'object' || update === null || Array.isArray(update)) {
    throw new ClientError('invalid_argument', 'flags must be an object of flag name → value');
  }
  const out: Record<string, boolean | number> = {};
  for (const [name, value] of Object.entries(update)) out[name] = parseFlagValue(name, value);
  return out as Partial<PersistFlags>;
}

export type FlagsListener = (
  current: Readonly<PersistFlags>,
  previous: Readonly<PersistFlags>,
) => void;

/** The dynamic config. */
export interface Flags {
  /** The current values (a frozen snapshot; read it again after a change). */
  get(): Readonly<PersistFlags>;
  /** Applies a validated update atomically and notifies listeners synchronously. */
  set(update: Partial<Record<FlagName, unknown>>): void;
  /** Calls `listener` after every change; returns the function that removes it. */
  onChange(listener: FlagsListener): () => void;
}

/** A dynamic config with the defaults, then `initial` applied (validated). */
export function createFlags(initial: Partial<Record<FlagName, unknown>> = {}): Flags {
  let current: Readonly<PersistFlags> = Object.freeze({
    ...defaultFlags(),
    ...parseFlags(initial),
  });
  const listeners = new Set<FlagsListener>();
  return {
    get: () => current,
    set(update) {
      const parsed = parseFlags(update);
      const next = Object.freeze({ ...current, ...parsed });
      checkCombined(next);
      if (FLAG_NAMES.every((n) => next[n] === current[n])) return;
      const previous = current;
      current = next;
      for (const l of [...listeners]) l(current, previous);
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/**
 * The flags set in `env`: each flag's upper-case name (`PERSIST_PUBSUB_CLIENT_ENABLED=false`).
 * Throws `ClientError` naming the variable on a bad value.
 */
export function flagsFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<PersistFlags> {
  const out: Record<string, unknown> = {};
  for (const name of FLAG_NAMES) {
    const v = env[name.toUpperCase()];
    if (v !== undefined) out[name] = v;
  }
  try {
    return parseFlags(out);
  } catch (err) {
    if (err instanceof ClientError && err.field !== undefined) {
      throw new ClientError(
        'invalid_argument',
        `environment variable ${err.field.toUpperCase()}: ${err.message}`,
        { field: err.field, cause: err },
      );
    }
    throw err;
  }
}
