/**
 * The HTTP/2 wire (RFC 9113 frames, RFC 7541 HPACK with its Huffman code), dependency-free:
 * what our client session (`src/client/h2`) and the broker's server session both speak. The
 * sessions themselves (streams, flow control, state) live with their layer.
 */
export {
  CLIENT_PREFACE,
  createFrameReader,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW_SIZE,
  ErrorCode,
  encodeFrame,
  encodeGoaway,
  encodeRstStream,
  encodeSettings,
  encodeWindowUpdate,
  Flag,
  FRAME_HEADER_BYTES,
  type Frame,
  type FrameReader,
  FrameType,
  MAX_ALLOWED_FRAME_SIZE,
  MAX_WINDOW_SIZE,
  type PeerSettings,
  readPeerSettings,
  Setting,
  takeDataFrames,
  unpaddedPayload,
  writeFrameHeader,
} from './frame.js';
export {
  createHpackDecoder,
  DEFAULT_HEADER_TABLE_SIZE,
  encodeHeaderBlock,
  type HeaderField,
  type HpackDecoder,
} from './hpack.js';
