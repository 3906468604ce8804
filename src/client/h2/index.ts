/**
 * Our own HTTP/2 client session on `net`/`tls`, used by the gRPC transport
 * (`../grpc-transport.ts`) in place of `node:http2`. Frames and HPACK are the protocol's
 * (`src/protocol/h2`), shared with the broker's server session.
 */
export { ErrorCode, type HeaderField } from '../../protocol/h2/index.js';
export {
  connectH2,
  type H2ConnectOptions,
  H2Error,
  type H2Headers,
  type H2Session,
  type H2SessionEvents,
  type H2Stream,
  type H2StreamEvents,
} from './session.js';
