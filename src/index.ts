// The package's public surface: what users of persist-pubsub get.

export type {
  AdminServer,
  AdminServerOptions,
  Broker,
  BrokerFlags,
  BrokerLimits,
  BrokerObserver,
  BrokerOptions,
  InProcessConnection,
  InProcessMessage,
  MetricsServer,
  MetricsServerOptions,
  NatsBridge,
  NatsBridgeOptions,
  ObservedPush,
  TokenGrant,
} from './broker/index.js';
export {
  AdminError,
  BrokerError,
  createAdminServer,
  createBroker,
  createMetricsServer,
  createNatsBridge,
} from './broker/index.js';
export type {
  BrokerSetMode,
  BrokerSetPubSubClient,
  BrokerStatus,
  ConnectionStatus,
  FlagName,
  Flags,
  OpenShardOptions,
  PersistClient,
  PersistClientOptions,
  PersistFlags,
  PubSubBrokersOptions,
  PubSubClient,
  PubSubTarget,
} from './client/index.js';
export {
  ClientError,
  createFlags,
  createPersistClient,
  flagsFromEnv,
  watchFlagsFile,
} from './client/index.js';
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
  openConsensus,
} from './consensus/index.js';
export type { ShardId, ShardIdErrorReason } from './protocol/index.js';
export {
  DEFAULT_MAX_SHARD_ID_BYTES,
  MAX_SEQNO,
  parseShardId,
  ShardIdError,
} from './protocol/index.js';
export type {
  AppliedEvent,
  AppliedSource,
  FieldDiff,
  Frontier,
  HollowBatch,
  LeasedReader,
  PersistState,
  PersistStateDiff,
  PubSubShardStatus,
  ShardHandle,
  ShardStateCache,
  ShardStateCacheOptions,
  ShardStateConfig,
  ShardStateErrorCode,
  ShardVersion,
  StateModel,
  UpdateContext,
  UpdateFn,
  UpdateResult,
  VersionCallback,
  WriterState,
} from './shard-state/index.js';
export {
  createShardStateCache,
  DiffApplyError,
  persistStateModel,
  ShardStateError,
} from './shard-state/index.js';
export type { Clock, Timer, TimerOptions } from './util/index.js';
