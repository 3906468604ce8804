/**
 * Messages between the demo (parent) and its worker processes, over Node's IPC channel.
 * A worker exits when the channel closes, so a parent that dies leaves no worker behind.
 */

/** What a worker process is told at start (its only argv, as JSON). */
export interface DemoWorkerConfig {
  readonly role: 'writer' | 'reader';
  readonly name: string;
  /** A Consensus URL shared by every process. */
  readonly consensus: string;
  /** The broker, `grpc://host:port`. */
  readonly pubsub: string;
  /** The JSON flags file the client watches (the demo switches pubsub with it). */
  readonly flagsFile: string;
  readonly shards: readonly string[];
  /** Writers: ms between two commits of one shard by this writer. */
  readonly intervalMs: number;
  /** Writers: first commit of each shard this long after start, in ms. */
  readonly offsetMs: number;
  /** How often the worker reports, in ms. */
  readonly tickMs: number;
}

/** Counters a worker reports, cumulative since it started. */
export interface DemoCounters {
  /** Commits made (writers). */
  commits: number;
  /** Consensus reads (`head` + `scan`) by this process. */
  reads: number;
  /** Reads made by a reader's fallback poll timer. */
  polls: number;
  /** Pushes the client dropped because its send queue was full. */
  pushDrops: number;
  /** Received diffs that did not decode or apply. */
  invalidDiffs: number;
  /** Failed updates or waits, and error-level log lines. */
  errors: number;
  /** Warn-level log lines (e.g. a connection closing while pubsub is switched off). */
  warnings: number;
}

/**
 * A commit made by a writer: shard index (into `shards`), commit number, and wall ms when the
 * update started and when its compare-and-set had committed.
 */
export type DemoCommit = readonly [shard: number, n: number, startMs: number, doneMs: number];
/** A commit applied in a reader: shard index, commit number, wall ms when applied. */
export type DemoApplied = readonly [shard: number, n: number, appliedMs: number];
/** Commit → applied: when the commit was made and the latency, in ms. */
export type DemoSample = readonly [commitMs: number, latencyMs: number];

export type ParentMessage =
  | { readonly type: 'start' }
  /** Writers: stop committing, report `done`. */
  | { readonly type: 'stop' }
  /** Readers: wait (bounded) until each shard reaches this seqno, report `done`. */
  | { readonly type: 'finish'; readonly heads: Readonly<Record<string, string>> };

/** A reader's final view of one shard. */
export interface DemoShardView {
  readonly seqno: string;
  readonly n: number;
  readonly lastStamp: number | null;
}

export type WorkerMessage =
  | { readonly type: 'ready' }
  | {
      readonly type: 'tick';
      readonly counters: DemoCounters;
      /** Writers: commits since the last tick. */
      readonly commits: readonly DemoCommit[];
      /** Readers: commits applied since the last tick. */
      readonly applied: readonly DemoApplied[];
      readonly connected: boolean;
    }
  | {
      readonly type: 'done';
      readonly counters: DemoCounters;
      /** Writers: commits per shard. */
      readonly commitsByShard: Readonly<Record<string, number>>;
      /** Readers: where each shard ended. */
      readonly views: Readonly<Record<string, DemoShardView>>;
      readonly failures: readonly string[];
    };

export function emptyCounters(): DemoCounters {
  return { commits: 0, reads: 0, polls: 0, pushDrops: 0, invalidDiffs: 0, errors: 0, warnings: 0 };
}
