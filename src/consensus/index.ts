export type { ConsensusErrorCode } from './errors.js';
export { ConsensusError, isIndeterminate } from './errors.js';
export {
  MAX_DATA_BYTES,
  MAX_KEY_BYTES,
  MAX_LIST_PAGE_SIZE,
  MAX_SCAN_LIMIT,
  MAX_SEQNO,
} from './limits.js';
export { createMemoryConsensus } from './memory.js';
export type {
  CallOptions,
  CasResult,
  Consensus,
  ConsensusBackend,
  ListKeysOptions,
  ListKeysPage,
  VersionedData,
} from './types.js';
