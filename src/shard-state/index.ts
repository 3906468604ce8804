/**
 * Shard state: one shared, seqno-ordered copy of each shard's state per process.
 *
 * `createShardStateCache({ consensus, hooks })` → `cache.open(shardId)` → a `ShardHandle`
 * (`state`, `seqno`, `update`, `waitForSeqno`, `listen`, `onVersion`, `refresh`, `close`). The client SDK
 * feeds pushed diffs to `cache.receiveDiff`, gap notices and reconnects to `cache.fetchNow`, and
 * pushes what the `publish` hook hands it. No gRPC and no broker here: only `Consensus`.
 */
export { createShardStateCache } from './cache.js';
export type { ShardStateConfig } from './config.js';
export {
  DEFAULT_SHARD_STATE_CONFIG,
  jitter,
  pollDelayMs,
  writerDelayMs,
} from './config.js';
export type { ShardStateErrorCode } from './errors.js';
export { ShardStateError } from './errors.js';
export type { InspectShardOptions, ShardInspection } from './inspect.js';
export { decodePushedDiff, INSPECT_PAGE_SIZE, inspectShard } from './inspect.js';
export type {
  FieldDiff,
  Frontier,
  HollowBatch,
  LeasedReader,
  PersistState,
  PersistStateDiff,
  WriterState,
} from './persist-model.js';
export { DiffApplyError, PERSIST_MODEL_NAME, persistStateModel } from './persist-model.js';
export type {
  AppliedEvent,
  AppliedSource,
  ConsensusReadReason,
  FetchNowReason,
  OpenOptions,
  PublishEvent,
  PubSubShardStatus,
  ReceiveDiffOptions,
  ReceiveOutcome,
  ShardHandle,
  ShardStateCache,
  ShardStateCacheOptions,
  ShardStateHooks,
  ShardVersion,
  SignalOptions,
  StateModel,
  UpdateContext,
  UpdateFn,
  UpdateResult,
  VersionCallback,
} from './types.js';
export { isRollupSeqno, rollupPhase } from './writer-loop.js';
