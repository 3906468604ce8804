// The package's public surface: what users of persist-pubsub get.

export type {
  CallOptions,
  CasResult,
  Consensus,
  ConsensusBackend,
  ListKeysOptions,
  ListKeysPage,
  OpenConsensusOptions,
  VersionedData,
} from './consensus/index.js';
export {
  ConsensusError,
  createMemoryConsensus,
  isIndeterminate,
  MAX_SEQNO,
  openConsensus,
} from './consensus/index.js';
