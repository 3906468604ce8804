/**
 * The pubsub client over gRPC to a broker: `createPubSubClient` (lifecycle, flags, metrics)
 * over `createGrpcTransport` (the wire).
 */
import { createPubSubClient, type PubSubClientOptions } from './create-pubsub-client.js';
import { createGrpcTransport, type GrpcTransportOptions } from './grpc-transport.js';
import type { PubSubClient } from './pubsub-client.js';

export type GrpcPubSubClientOptions = GrpcTransportOptions & PubSubClientOptions;

export function createGrpcPubSubClient(options: GrpcPubSubClientOptions): PubSubClient {
  return createPubSubClient(createGrpcTransport(options), options);
}
