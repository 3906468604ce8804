import { describeConformance } from './conformance.test-suite.js';
import { ConsensusError } from './errors.js';
import { createMemoryConsensus } from './memory.js';
import type { CallOptions, Consensus } from './types.js';

/**
 * The conformance suite opens several handles on one store; a memory Consensus is its own
 * store, so each handle here is a view of one shared instance with its own closed flag.
 */
const shared = createMemoryConsensus();

function view(store: Consensus): Consensus {
  let closed = false;
  const check = () => {
    if (closed) throw new ConsensusError('closed', 'the Consensus is closed');
  };
  return {
    backend: store.backend,
    head: async (key, options?: CallOptions) => {
      check();
      return store.head(key, options);
    },
    compareAndSet: async (key, expected, next, options) => {
      check();
      return store.compareAndSet(key, expected, next, options);
    },
    scan: async (key, from, limit, options) => {
      check();
      return store.scan(key, from, limit, options);
    },
    truncate: async (key, seqno, options) => {
      check();
      return store.truncate(key, seqno, options);
    },
    listKeys: async (options) => {
      check();
      return store.listKeys(options);
    },
    close: async () => {
      closed = true;
    },
  };
}

describeConformance('memory', async () => view(shared));
