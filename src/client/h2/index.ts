/**
 * Our own HTTP/2 client on `net`/`tls` (frames, HPACK, the session), used by the gRPC
 * transport (`../grpc-transport.ts`) in place of `node:http2`.
 */
export { ErrorCode } from './frame.js';
export type { HeaderField } from './hpack.js';
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
