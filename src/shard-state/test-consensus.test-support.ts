/**
 * A Consensus wrapper for shard-state tests: records every scan and lets a test inject
 * compare-and-set outcomes (forced mismatches, indeterminate errors before or after the write)
 * and hold scans until released. Not part of the public surface.
 */
import { type Consensus, ConsensusError, type VersionedData } from '../consensus/index.js';

export interface ScanCall {
  from: bigint;
  limit: number;
  returned: number;
}

export type CasFault =
  | 'mismatch'
  | 'indeterminate_after_write'
  | 'indeterminate_no_write'
  | 'unavailable';

export interface TestConsensus extends Consensus {
  readonly scans: ScanCall[];
  readonly casCalls: { expected: bigint | null; seqno: bigint }[];
  /** Faults the next compare-and-sets meet, in order. */
  casFaults: CasFault[];
  /** While set, scans wait for it before reading. */
  scanGate: Promise<void> | undefined;
}

export function createTestConsensus(inner: Consensus): TestConsensus {
  const t: TestConsensus = {
    backend: inner.backend,
    scans: [],
    casCalls: [],
    casFaults: [],
    scanGate: undefined,
    head: (key, o) => inner.head(key, o),
    async compareAndSet(key, expected, next, o) {
      t.casCalls.push({ expected, seqno: next.seqno });
      const fault = t.casFaults.shift();
      if (fault === 'mismatch') return 'mismatch';
      if (fault === 'unavailable') throw new ConsensusError('unavailable', 'injected');
      if (fault === 'indeterminate_no_write') {
        throw new ConsensusError('indeterminate', 'injected: lost before the write');
      }
      const r = await inner.compareAndSet(key, expected, next, o);
      if (fault === 'indeterminate_after_write') {
        throw new ConsensusError('indeterminate', 'injected: lost after the write');
      }
      return r;
    },
    async scan(key, from, limit, o): Promise<VersionedData[]> {
      if (t.scanGate !== undefined) await t.scanGate;
      const out = await inner.scan(key, from, limit, o);
      t.scans.push({ from, limit, returned: out.length });
      return out;
    },
    truncate: (key, seqno, o) => inner.truncate(key, seqno, o),
    listKeys: (o) => inner.listKeys(o),
    close: () => inner.close(),
  };
  return t;
}
