export type { ConsensusErrorCode } from './errors.js';
export { ConsensusError, isIndeterminate } from './errors.js';
export type { ConsensusOp, InstrumentConsensusOptions } from './instrument.js';
export {
  CONSENSUS_CAS_MISMATCHES_TOTAL,
  CONSENSUS_OP_DURATION_SECONDS,
  CONSENSUS_OPS_TOTAL,
  instrumentConsensus,
} from './instrument.js';
export {
  MAX_DATA_BYTES,
  MAX_KEY_BYTES,
  MAX_LIST_PAGE_SIZE,
  MAX_SCAN_LIMIT,
} from './limits.js';
export { createMemoryConsensus } from './memory.js';
export { CONSENSUS_URL_FORMS, openConsensus } from './open.js';
export type { SqliteConsensusOptions, SqliteSynchronous } from './sqlite.js';
export {
  DEFAULT_SQLITE_BUSY_TIMEOUT_MS,
  DEFAULT_SQLITE_SYNCHRONOUS,
  openSqliteConsensus,
} from './sqlite.js';
export type {
  CallOptions,
  CasResult,
  Consensus,
  ConsensusBackend,
  ListKeysOptions,
  ListKeysPage,
  OpenConsensusOptions,
  VersionedData,
} from './types.js';
