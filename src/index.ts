// The package's public surface: what users of persist-pubsub get.

export type {
  CallOptions,
  CasResult,
  Consensus,
  ConsensusBackend,
  ListKeysOptions,
  ListKeysPage,
  VersionedData,
} from './consensus/index.js';
export {
  ConsensusError,
  createMemoryConsensus,
  isIndeterminate,
  MAX_SEQNO,
} from './consensus/index.js';
