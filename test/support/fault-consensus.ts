/**
 * Consensus faults: a `Consensus` wrapper whose calls fail the ways a real store fails —
 * a compare-and-set refused before it is sent (determinate `unavailable`), one that applied but
 * whose answer was lost (`indeterminate`, applied), one lost before it applied
 * (`indeterminate`, not applied), and reads that fail (`unavailable`). Decisions are a pure
 * function of the seed, the label and the call's identity, like the fault transport's.
 */

import type { Consensus } from '../../src/consensus/index.js';
import { ConsensusError } from '../../src/consensus/index.js';
import { decide } from './fault-transport.js';

export interface ConsensusFaultRates {
  casRefused: number;
  casAppliedLost: number;
  casLost: number;
  readFailed: number;
}

export const NO_CONSENSUS_FAULTS: ConsensusFaultRates = {
  casRefused: 0,
  casAppliedLost: 0,
  casLost: 0,
  readFailed: 0,
};

export interface FaultConsensus extends Consensus {
  readonly counts: Readonly<{
    casRefused: number;
    casAppliedLost: number;
    casLost: number;
    readFailed: number;
  }>;
  setRates(rates: ConsensusFaultRates): void;
}

export function createFaultConsensus(
  inner: Consensus,
  seed: number,
  label: string,
  initial: ConsensusFaultRates = NO_CONSENSUS_FAULTS,
): FaultConsensus {
  let rates = initial;
  const counts = { casRefused: 0, casAppliedLost: 0, casLost: 0, readFailed: 0 };
  let calls = 0;
  const u = (op: string, key: string) => decide(seed, `${label}|${op}|${key}|${++calls}`);
  const readFault = (op: string, key: string) => {
    if (u(op, key) < rates.readFailed) {
      counts.readFailed++;
      throw new ConsensusError('unavailable', `fault injection: ${op} failed`, { key });
    }
  };
  return {
    backend: inner.backend,
    counts,
    setRates(next) {
      rates = next;
    },
    async head(key, options) {
      readFault('head', key);
      return inner.head(key, options);
    },
    async scan(key, from, limit, options) {
      readFault('scan', key);
      return inner.scan(key, from, limit, options);
    },
    async compareAndSet(key, expected, next, options) {
      const x = u('cas', key);
      const r = rates;
      if (x < r.casRefused) {
        counts.casRefused++;
        throw new ConsensusError('unavailable', 'fault injection: compare-and-set refused', {
          key,
        });
      }
      if (x < r.casRefused + r.casLost) {
        counts.casLost++;
        throw new ConsensusError('indeterminate', 'fault injection: request lost', { key });
      }
      const result = await inner.compareAndSet(key, expected, next, options);
      if (x < r.casRefused + r.casLost + r.casAppliedLost) {
        counts.casAppliedLost++;
        throw new ConsensusError('indeterminate', 'fault injection: answer lost', { key });
      }
      return result;
    },
    truncate: (key, seqno, options) => inner.truncate(key, seqno, options),
    listKeys: (options) => inner.listKeys(options),
    // The wrapped store is shared by every client of a schedule: its owner closes it.
    close: async () => {},
  };
}
