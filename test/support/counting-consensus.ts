import type { Consensus } from '../../src/consensus/index.js';

/** Counts the reads (head, scan) made through it, and every key any call named. */
export function countingConsensus(inner: Consensus) {
  const counts = { reads: 0, keys: new Set<string>() };
  const c: Consensus = {
    backend: inner.backend,
    head: (key, ...a) => {
      counts.reads++;
      counts.keys.add(key);
      return inner.head(key, ...a);
    },
    scan: (key, ...a) => {
      counts.reads++;
      counts.keys.add(key);
      return inner.scan(key, ...a);
    },
    compareAndSet: (key, ...a) => {
      counts.keys.add(key);
      return inner.compareAndSet(key, ...a);
    },
    truncate: (key, ...a) => {
      counts.keys.add(key);
      return inner.truncate(key, ...a);
    },
    listKeys: (...a) => inner.listKeys(...a),
    close: () => inner.close(),
  };
  return { consensus: c, counts };
}
