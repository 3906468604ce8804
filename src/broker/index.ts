// The broker's public surface: the data plane (`createBroker`) and its contract types.

export type { AdminErrorCode } from './admin-errors.js';
export { AdminError } from './admin-errors.js';
export type { MetricsServer, MetricsServerOptions } from './admin-metrics-server.js';
export { createMetricsServer } from './admin-metrics-server.js';
export type {
  AdminBroker,
  AdminServer,
  AdminServerOptions,
  ConnectionJson,
  ShardJson,
} from './admin-server.js';
export { createAdminServer, DEFAULT_ADMIN_LISTEN } from './admin-server.js';
export type { NatsBridge, NatsBridgeOptions, NatsBridgeState } from './bridge-nats.js';
export {
  createNatsBridge,
  DEFAULT_BRIDGE_CONNECT_TIMEOUT_MS,
  DEFAULT_BRIDGE_RECONNECT_TIME_WAIT_MS,
} from './bridge-nats.js';
export { createBroker } from './broker.js';
export type { BrokerErrorCode } from './errors.js';
export { BrokerError } from './errors.js';
export {
  DEFAULT_DRAIN_DEADLINE_MS,
  DEFAULT_FLAGS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_HTTP2_SERVER,
  DEFAULT_LIMITS,
  DEFAULT_LISTEN,
  DEFAULT_MAX_CONNECTION_AGE_GRACE_MS,
  DEFAULT_MAX_CONNECTION_AGE_MS,
  DEFAULT_WRITE_WINDOW_US,
  formatListenAddress,
  isUnixSocketAddress,
  MAX_WRITE_WINDOW_US,
} from './options.js';
export { HTTP2_SERVER_KINDS, type Http2ServerKind } from './server-stream.js';
export type { ShardPatterns } from './shard-patterns.js';
export { compileShardPatterns } from './shard-patterns.js';
export type { TokenGrant, TokenScope, TokenTable } from './token-scopes.js';
export { compileTokenGrants } from './token-scopes.js';
export type {
  Broker,
  BrokerFlags,
  BrokerLimits,
  BrokerObserver,
  BrokerObserverControls,
  BrokerOptions,
  BrokerState,
  BrokerTlsOptions,
  ConnectionInfo,
  HostPort,
  InProcessConnection,
  InProcessConnectOptions,
  InProcessMessage,
  ListenAddress,
  ObservedPush,
  Page,
  PageRequest,
  ShardInfo,
  UnixSocketAddress,
} from './types.js';
