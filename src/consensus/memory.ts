import { ConsensusError } from './errors.js';
import {
  decodePageToken,
  encodePageToken,
  throwIfAborted,
  validateCas,
  validateKey,
  validateLimit,
  validatePageSize,
  validateSeqno,
} from './limits.js';
import type {
  CallOptions,
  CasResult,
  Consensus,
  ListKeysOptions,
  ListKeysPage,
  VersionedData,
} from './types.js';

/**
 * An in-memory Consensus: for tests and single-process use. Linearizable because every method
 * runs to completion on the event loop. Data is copied in and out, so callers cannot mutate
 * stored versions.
 */
export function createMemoryConsensus(): Consensus {
  return new MemoryConsensus();
}

class MemoryConsensus implements Consensus {
  readonly backend = 'memory' as const;
  /** Versions per key, ascending by seqno; a key whose versions are all truncated stays. */
  #log = new Map<string, VersionedData[]>();
  #closed = false;

  async head(key: string, options?: CallOptions): Promise<VersionedData | undefined> {
    this.#check(options);
    validateKey(key);
    const versions = this.#log.get(key);
    const last = versions?.[versions.length - 1];
    return last === undefined ? undefined : copy(last);
  }

  async compareAndSet(
    key: string,
    expected: bigint | null,
    next: VersionedData,
    options?: CallOptions,
  ): Promise<CasResult> {
    this.#check(options);
    validateCas(key, expected, next);
    const versions = this.#log.get(key);
    const head = versions?.[versions.length - 1]?.seqno ?? null;
    if (head !== expected) return 'mismatch';
    if (versions === undefined) this.#log.set(key, [copy(next)]);
    else versions.push(copy(next));
    return 'committed';
  }

  async scan(
    key: string,
    from: bigint,
    limit: number,
    options?: CallOptions,
  ): Promise<VersionedData[]> {
    this.#check(options);
    validateKey(key);
    validateSeqno(from, 'from');
    validateLimit(limit);
    const versions = this.#log.get(key) ?? [];
    const start = lowerBound(versions, from);
    return versions.slice(start, start + limit).map(copy);
  }

  async truncate(key: string, seqno: bigint, options?: CallOptions): Promise<number> {
    this.#check(options);
    validateKey(key);
    validateSeqno(seqno);
    const versions = this.#log.get(key);
    const head = versions?.[versions.length - 1];
    if (versions === undefined || head === undefined) {
      throw new ConsensusError('failed_precondition', `truncate of ${key}: it has no entries`, {
        key,
      });
    }
    if (seqno > head.seqno) {
      throw new ConsensusError(
        'failed_precondition',
        `truncate of ${key} at ${seqno} is above its head ${head.seqno}`,
        { key },
      );
    }
    const cut = lowerBound(versions, seqno);
    versions.splice(0, cut);
    return cut;
  }

  async listKeys(options?: ListKeysOptions): Promise<ListKeysPage> {
    this.#check(options);
    const pageSize = validatePageSize(options?.pageSize);
    const after = decodePageToken(options?.pageToken);
    // Keys after the cursor in code-unit order; sorting per page keeps no listing state.
    const keys = [...this.#log.keys()]
      .filter((k) => after === undefined || k > after)
      .sort()
      .slice(0, pageSize);
    const last = keys[keys.length - 1];
    return keys.length === pageSize && last !== undefined
      ? { keys, nextPageToken: encodePageToken(last) }
      : { keys };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #check(options: CallOptions | undefined): void {
    if (this.#closed) throw new ConsensusError('closed', 'the Consensus is closed');
    throwIfAborted(options);
  }
}

function copy(v: VersionedData): VersionedData {
  return { seqno: v.seqno, data: new Uint8Array(v.data) };
}

/** Index of the first version with `seqno >= from`. */
function lowerBound(versions: VersionedData[], from: bigint): number {
  let lo = 0;
  let hi = versions.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (versions[mid]!.seqno < from) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
