// The client SDK's public surface.

export type {
  BrokerSetMode,
  BrokerSetOptions,
  BrokerSetPubSubClient,
  BrokerStatus,
} from './broker-set.js';
export { createBrokerSetPubSubClient, DEFAULT_HANDOVER_GRACE_MS, lookupAll } from './broker-set.js';
export type { BrokerTransportOptions } from './broker-transport.js';
export { createBrokerTransport } from './broker-transport.js';
export type { PubSubClientOptions } from './create-pubsub-client.js';
export { createPubSubClient, DEFAULT_INITIAL_CONNECT_BACKOFF_MS } from './create-pubsub-client.js';
export type { ClientErrorCode } from './errors.js';
export { ClientError } from './errors.js';
export type { FlagName, Flags, FlagsListener, PersistFlags } from './flags.js';
export { createFlags, defaultFlags, FLAG_NAMES, flagsFromEnv, parseFlags } from './flags.js';
export type { FlagsFileWatcher, WatchFlagsFileOptions } from './flags-file.js';
export { watchFlagsFile } from './flags-file.js';
export type { GrpcPubSubClientOptions } from './grpc-pubsub-client.js';
export { createGrpcPubSubClient } from './grpc-pubsub-client.js';
export type { GrpcTlsOptions, GrpcTransportOptions } from './grpc-transport.js';
export { createGrpcTransport } from './grpc-transport.js';
export type { InProcessTransportOptions } from './in-process-transport.js';
export { createInProcessTransport } from './in-process-transport.js';
export type { ClientMetrics } from './metrics.js';
export { clientMetrics, E2E_LATENCY_BUCKETS_SECONDS } from './metrics.js';
export type { NatsJetStreamOptions, NatsTransportOptions } from './nats-transport.js';
export {
  createNatsTransport,
  DEFAULT_NATS_CONNECT_TIMEOUT_MS,
  DEFAULT_NATS_PING_INTERVAL_MS,
} from './nats-transport.js';
export type { NoopPubSubClientOptions } from './noop-pubsub-client.js';
export { createNoopPubSubClient } from './noop-pubsub-client.js';
export type {
  OpenShardOptions,
  PersistClient,
  PersistClientOptions,
  PubSubBrokersOptions,
  PubSubGrpcOptions,
  PubSubTarget,
} from './persist-client.js';
export { createPersistClient } from './persist-client.js';
export type {
  ConnectionStatus,
  PubSubClient,
  PubSubEvent,
  ReceivedDiff,
  ReceivedGap,
  ReceivedRefusal,
  ReceivedResync,
  SubscribeOptions,
  SubscriptionToken,
} from './pubsub-client.js';
export type { Rendezvous } from './rendezvous.js';
export { createRendezvous, rendezvousWeight } from './rendezvous.js';
export type {
  ConnectOptions,
  InboundMessage,
  PubSubConnection,
  PubSubTransport,
  SendResult,
} from './transport.js';
