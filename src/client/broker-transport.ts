/**
 * The transport for a broker that runs in this process. With
 * `persist_pubsub_same_process_delegate_enabled` on (the default) each connection is the
 * broker's same-process delegate (no serialization, no socket); with it off the client talks
 * gRPC to the broker's own port like any other process would. The flag is read at every
 * connect, and `createPubSubClient` reconnects at once when it changes (`reconnectOn`).
 */
import type { Broker } from '../broker/index.js';
import type { Flags } from './flags.js';
import { createGrpcTransport, type GrpcTransportOptions } from './grpc-transport.js';
import { createInProcessTransport } from './in-process-transport.js';
import type { PubSubTransport } from './transport.js';

export interface BrokerTransportOptions {
  flags: Flags;
  callerId?: string | undefined;
  /** For the gRPC path (delegate off): TLS, token, keepalive. The URL is the broker's address. */
  grpc?: Omit<GrpcTransportOptions, 'url' | 'callerId'> | undefined;
}

export function createBrokerTransport(
  broker: Broker,
  options: BrokerTransportOptions,
): PubSubTransport {
  const inProcess = createInProcessTransport(broker, { callerId: options.callerId });
  let grpc: { port: number; transport: PubSubTransport } | undefined;
  const grpcTransport = (): PubSubTransport => {
    const { host, port } = broker.address;
    if (grpc === undefined || grpc.port !== port) {
      const scheme = options.grpc?.tls !== undefined ? 'grpcs' : 'grpc';
      const h = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
      grpc = {
        port,
        transport: createGrpcTransport({
          ...options.grpc,
          url: `${scheme}://${h}:${port}`,
          callerId: options.callerId,
          flags: options.flags,
        }),
      };
    }
    return grpc.transport;
  };
  const delegate = (): boolean => options.flags.get().persist_pubsub_same_process_delegate_enabled;
  return {
    get kind() {
      return delegate() ? inProcess.kind : 'grpc';
    },
    connect(connectOptions) {
      return delegate()
        ? inProcess.connect(connectOptions)
        : grpcTransport().connect(connectOptions);
    },
  };
}
