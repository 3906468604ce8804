/**
 * The transport for a broker that runs in this process. With
 * `persist_pubsub_same_process_delegate_enabled` on (the default) each connection is the
 * broker's same-process delegate (no serialization, no socket); with it off the client talks
 * gRPC to the broker's own port like any other process would. The flag is read at every
 * connect, and `createPubSubClient` reconnects at once when it changes (`reconnectOn`).
 */
import { type Broker, isUnixSocketAddress, type ListenAddress } from '../broker/index.js';
import { formatUnixTarget } from '../protocol/index.js';
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

/** The URL of a broker's own listener, as another process would dial it. */
function listenerUrl(address: ListenAddress, tls: boolean): string {
  if (isUnixSocketAddress(address)) return formatUnixTarget(address.path);
  const { host, port } = address;
  const h = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return `${tls ? 'grpcs' : 'grpc'}://${h}:${port}`;
}

export function createBrokerTransport(
  broker: Broker<ListenAddress>,
  options: BrokerTransportOptions,
): PubSubTransport {
  const inProcess = createInProcessTransport(broker, { callerId: options.callerId });
  let grpc: { url: string; transport: PubSubTransport } | undefined;
  const grpcTransport = (): PubSubTransport => {
    const url = listenerUrl(broker.address, options.grpc?.tls !== undefined);
    if (grpc === undefined || grpc.url !== url) {
      grpc = {
        url,
        transport: createGrpcTransport({
          ...options.grpc,
          url,
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
