/**
 * A minimal HTTP/2 client session (RFC 9113) on `net` or `tls`, for the gRPC transport's one
 * bidi stream: connection preface, SETTINGS (acked; the peer's MAX_FRAME_SIZE and
 * INITIAL_WINDOW_SIZE honoured), flow control both ways (a stream's writes wait in its queue
 * while the peer's window is exhausted, counted by `bufferedBytes`; WINDOW_UPDATEs sent as we
 * consume), PING (theirs acked, ours with a callback), GOAWAY (reported, streams above the
 * last one reset as refused), RST_STREAM, HEADERS with CONTINUATION (decoded by our HPACK),
 * trailers, and TLS with ALPN h2.
 *
 * Why not `node:http2`: at one message per wake-up its stream's Readable/Writable machinery
 * costs about a third of the client's CPU per message (`npm run bench -- h2-client`); plain
 * sockets are read with `net`'s `onread` (into slabs: no copy per read, no Readable stream).
 * Untrusted bytes: every bad frame ends the connection with a GOAWAY and an `H2Error` naming
 * what was wrong; nothing the peer sends can throw out of the socket's read.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import {
  CLIENT_PREFACE,
  createFrameReader,
  createHpackDecoder,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW_SIZE,
  ErrorCode,
  encodeFrame,
  encodeGoaway,
  encodeHeaderBlock,
  encodeRstStream,
  encodeSettings,
  encodeWindowUpdate,
  Flag,
  type Frame,
  FrameType,
  type HeaderField,
  MAX_WINDOW_SIZE,
  readPeerSettings,
  Setting,
  takeDataFrames,
  unpaddedPayload,
} from '../../protocol/h2/index.js';

/** The session failed: a protocol error (ours to the peer, or the peer's), or the socket. */
export class H2Error extends Error {
  override readonly name = 'H2Error';
  constructor(
    /** The HTTP/2 error code sent in our GOAWAY (RFC 9113 §7); undefined for socket errors. */
    readonly h2Code: number | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Where to dial: a TCP host and port, or a Unix socket's path. */
export type H2ConnectTarget =
  | { host: string; port: number; path?: undefined }
  | { path: string; host?: undefined; port?: undefined };

export type H2ConnectOptions = H2ConnectTarget & H2SessionOptions;

export interface H2SessionOptions {
  /** TLS (ALPN `h2` is added). Plain TCP when undefined. */
  tls?: ConnectionOptions | undefined;
  /** Our SETTINGS_INITIAL_WINDOW_SIZE: what the peer may send on a stream before we ack. */
  streamWindowBytes: number;
  /** The connection's receive window (raised from 65,535 by a WINDOW_UPDATE at once). */
  connectionWindowBytes: number;
  /** Tests: a connected duplex to speak over instead of dialling. */
  socket?: Socket | undefined;
}

export interface H2SessionEvents {
  /** The peer's first SETTINGS arrived: it speaks HTTP/2 and the connection is up. */
  onConnect(): void;
  /** The peer sent GOAWAY (RFC 9113 §6.8). The session stays open for streams up to `lastStreamId`. */
  onGoaway(code: number, lastStreamId: number): void;
  /** The session ended (peer, network or protocol error). Called once, never after `destroy()`. */
  onClose(error: H2Error | undefined): void;
}

export type H2Headers = Record<string, string>;

export interface H2StreamEvents {
  /** Response headers (first block) or trailers (a later one); `endStream`: none follow. */
  onHeaders(headers: H2Headers, endStream: boolean): void;
  /** DATA, in order; the chunk is the caller's to keep. */
  onData(data: Buffer): void;
  /** The peer ended the stream (END_STREAM), after the last onHeaders/onData. */
  onEnd(): void;
  /** The peer reset the stream (RST_STREAM, or refused by its GOAWAY). */
  onReset(code: number): void;
}

export interface H2Stream {
  /** Queues `data` as DATA frames, sent as the peer's windows allow. */
  write(data: Buffer): void;
  /** Bytes written and not yet taken by the kernel: waiting for window, or in the socket. */
  readonly bufferedBytes: number;
  /** Resets the stream (RST_STREAM, CANCEL by default); no events after. Idempotent. */
  close(code?: number): void;
}

export interface H2Session {
  /** Opens a stream with these request headers (pseudo-headers first). Throws if going away. */
  request(headers: readonly HeaderField[], events: H2StreamEvents): H2Stream;
  /** Sends a PING; `done` runs at its ACK. Never called once the session is closed. */
  ping(done: () => void): void;
  /** Closes the socket at once; no events after. Idempotent. */
  destroy(): void;
}

/** The largest header block (HEADERS + CONTINUATIONs) we buffer. */
const MAX_HEADER_BLOCK_BYTES = 64 * 1024;
/**
 * Plain sockets read into a slab, each read into the slab's unused rest: the chunk handed on is
 * a view (no copy, no buffer per read: DATA and the views into it may outlive the read, and no
 * byte of a slab is written twice). A new slab when less than a read's worth is left.
 */
const SLAB_BYTES = 256 * 1024;
const READ_BUFFER_BYTES = 64 * 1024;

interface StreamState {
  id: number;
  events: H2StreamEvents;
  /** The peer's window for our DATA on this stream (may go negative on a SETTINGS change). */
  sendWindow: number;
  /** Data waiting for window. */
  queue: Buffer[];
  queuedBytes: number;
  /** Our window for the peer's DATA, and what we consumed without a WINDOW_UPDATE yet. */
  recvWindow: number;
  recvUnacked: number;
  headersSeen: boolean;
}

export function connectH2(options: H2ConnectOptions, events: H2SessionEvents): H2Session {
  const { streamWindowBytes, connectionWindowBytes } = options;
  let closed = false;
  let connected = false;
  let goingAway = false;
  let nextStreamId = 1;
  const streams = new Map<number, StreamState>();
  // The peer's settings and windows.
  let peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  let peerInitialWindow = DEFAULT_WINDOW_SIZE;
  let connSendWindow = DEFAULT_WINDOW_SIZE;
  // Ours.
  let connRecvWindow = connectionWindowBytes;
  let connRecvUnacked = 0;
  const reader = createFrameReader(DEFAULT_MAX_FRAME_SIZE);
  const hpack = createHpackDecoder();
  /** A header block in progress (HEADERS without END_HEADERS, then CONTINUATIONs). */
  let continuation:
    | { streamId: number; endStream: boolean; parts: Buffer[]; bytes: number }
    | undefined;
  /** Control frames made while reading one chunk, written together after it. */
  let control: Buffer[] = [];
  const pings = new Map<string, () => void>();
  let pingCounter = 0;

  const socket: Socket = options.socket ?? dial();

  function dial(): Socket {
    if (options.tls !== undefined) {
      const s: TLSSocket = tlsConnect({
        ...options.tls,
        ...(options.path !== undefined
          ? { path: options.path }
          : { host: options.host, port: options.port }),
        ALPNProtocols: ['h2'],
      });
      s.setNoDelay(true);
      s.once('secureConnect', () => {
        if (s.alpnProtocol !== 'h2') {
          fail(
            undefined,
            `the server did not negotiate h2 over TLS (ALPN ${String(s.alpnProtocol)})`,
          );
        }
      });
      s.on('data', onChunk);
      return s;
    }
    let slab = Buffer.allocUnsafe(SLAB_BYTES);
    let slabUsed = 0;
    return netConnect({
      ...(options.path !== undefined
        ? { path: options.path }
        : { host: options.host, port: options.port, noDelay: true }),
      onread: {
        // Called for every read's buffer, after the callback of the one before.
        buffer: (): Buffer => {
          if (SLAB_BYTES - slabUsed < READ_BUFFER_BYTES) {
            slab = Buffer.allocUnsafe(SLAB_BYTES);
            slabUsed = 0;
          }
          return slab.subarray(slabUsed);
        },
        callback: (nread: number, buf: Uint8Array): boolean => {
          slabUsed += nread;
          onChunk(buf.subarray(0, nread) as Buffer);
          return true;
        },
      },
    });
  }
  if (options.socket !== undefined) socket.on('data', onChunk);
  socket.on('error', (err: Error) => fail(undefined, err.message, err));
  socket.on('close', () => fail(undefined, 'connection closed'));
  socket.write(
    Buffer.concat([
      CLIENT_PREFACE,
      encodeSettings([
        [Setting.ENABLE_PUSH, 0],
        [Setting.INITIAL_WINDOW_SIZE, streamWindowBytes],
        [Setting.MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK_BYTES],
      ]),
      ...(connectionWindowBytes > DEFAULT_WINDOW_SIZE
        ? [encodeWindowUpdate(0, connectionWindowBytes - DEFAULT_WINDOW_SIZE)]
        : []),
    ]),
  );

  /** Ends the session: a GOAWAY with `code` when we found the peer at fault. */
  function fail(code: number | undefined, message: string, cause?: unknown): void {
    if (closed) return;
    closed = true;
    streams.clear();
    pings.clear();
    control = [];
    if (code !== undefined && !socket.destroyed) {
      socket.end(encodeGoaway(0, code, message.slice(0, 200)), () => socket.destroy());
    } else {
      socket.destroy();
    }
    const why = code === undefined ? message : `HTTP/2 protocol error from the peer: ${message}`;
    events.onClose(new H2Error(code, why, cause === undefined ? undefined : { cause }));
  }
  const protocolError = (message: string): false => {
    fail(ErrorCode.PROTOCOL_ERROR, message);
    return false;
  };

  function onChunk(chunk: Buffer): void {
    if (closed) return;
    try {
      const tooLarge = reader.push(chunk, onFrame);
      if (tooLarge !== undefined) fail(ErrorCode.FRAME_SIZE_ERROR, tooLarge);
      flushControl();
    } catch (err) {
      // A defect of ours or of a callback: end this connection, never the process.
      fail(ErrorCode.INTERNAL_ERROR, `internal error: ${(err as Error).message}`, err);
    }
  }
  function flushControl(): void {
    if (closed || control.length === 0) return;
    const out = control.length === 1 ? control[0]! : Buffer.concat(control);
    control = [];
    socket.write(out);
  }

  /** One frame; `false` stops reading (the session failed). */
  function onFrame(f: Frame): boolean {
    if (closed) return false;
    if (!connected && (f.type !== FrameType.SETTINGS || (f.flags & Flag.ACK) !== 0)) {
      return protocolError(
        `the first frame was type ${f.type}, not SETTINGS (not an HTTP/2 server?)`,
      );
    }
    if (continuation !== undefined && f.type !== FrameType.CONTINUATION) {
      return protocolError(`frame type ${f.type} inside a header block`);
    }
    switch (f.type) {
      case FrameType.DATA:
        return onData(f);
      case FrameType.HEADERS:
        return onHeaders(f);
      case FrameType.CONTINUATION:
        return onContinuation(f);
      case FrameType.SETTINGS:
        return onSettings(f);
      case FrameType.PING:
        return onPing(f);
      case FrameType.GOAWAY:
        return onGoaway(f);
      case FrameType.RST_STREAM:
        return onRstStream(f);
      case FrameType.WINDOW_UPDATE:
        return onWindowUpdate(f);
      case FrameType.PUSH_PROMISE:
        return protocolError('PUSH_PROMISE with push disabled');
      default:
        // PRIORITY and unknown types are ignored (RFC 9113 §4.1, §5.5).
        return true;
    }
  }

  function onData(f: Frame): boolean {
    if (f.streamId === 0) return protocolError('DATA on stream 0');
    const length = f.payload.length;
    if (length > connRecvWindow) {
      fail(ErrorCode.FLOW_CONTROL_ERROR, `DATA of ${length} bytes past the connection window`);
      return false;
    }
    connRecvWindow -= length;
    connRecvUnacked += length;
    if (connRecvUnacked >= connectionWindowBytes / 2) {
      control.push(encodeWindowUpdate(0, connRecvUnacked));
      connRecvWindow += connRecvUnacked;
      connRecvUnacked = 0;
    }
    const s = streams.get(f.streamId);
    if (s === undefined) {
      // A stream we reset (or never had): its data only counts against the connection.
      return f.streamId < nextStreamId || protocolError(`DATA on idle stream ${f.streamId}`);
    }
    if (length > s.recvWindow) {
      fail(ErrorCode.FLOW_CONTROL_ERROR, `DATA of ${length} bytes past stream ${s.id}'s window`);
      return false;
    }
    const body = unpaddedPayload(f, 0);
    if (body === undefined) return protocolError('DATA with bad padding');
    s.recvWindow -= length;
    s.recvUnacked += length;
    const end = (f.flags & Flag.END_STREAM) !== 0;
    if (!end && s.recvUnacked >= streamWindowBytes / 2) {
      control.push(encodeWindowUpdate(s.id, s.recvUnacked));
      s.recvWindow += s.recvUnacked;
      s.recvUnacked = 0;
    }
    if (body.length > 0) s.events.onData(body);
    if (end && !closed) endStream(s);
    return !closed;
  }

  function endStream(s: StreamState): void {
    if (streams.get(s.id) !== s) return;
    // Our side stays writable in HTTP/2 terms, but a gRPC call is over at the peer's end.
    streams.delete(s.id);
    s.events.onEnd();
  }

  function onHeaders(f: Frame): boolean {
    if (f.streamId === 0) return protocolError('HEADERS on stream 0');
    const extra = (f.flags & Flag.PRIORITY) !== 0 ? 5 : 0;
    const fragment = unpaddedPayload(f, extra);
    if (fragment === undefined) return protocolError('HEADERS with bad padding');
    const endStream = (f.flags & Flag.END_STREAM) !== 0;
    if ((f.flags & Flag.END_HEADERS) !== 0) return headerBlock(f.streamId, endStream, fragment);
    continuation = {
      streamId: f.streamId,
      endStream,
      parts: [Buffer.from(fragment)],
      bytes: fragment.length,
    };
    return true;
  }

  function onContinuation(f: Frame): boolean {
    const c = continuation;
    if (c === undefined || f.streamId !== c.streamId) {
      return protocolError('CONTINUATION without a header block in progress on its stream');
    }
    c.bytes += f.payload.length;
    if (c.bytes > MAX_HEADER_BLOCK_BYTES) {
      return protocolError(`header block over ${MAX_HEADER_BLOCK_BYTES} bytes`);
    }
    c.parts.push(Buffer.from(f.payload));
    if ((f.flags & Flag.END_HEADERS) === 0) return true;
    continuation = undefined;
    return headerBlock(c.streamId, c.endStream, Buffer.concat(c.parts));
  }

  function headerBlock(streamId: number, end: boolean, block: Buffer): boolean {
    // Decoded even for a stream we no longer have: the table must follow the peer's.
    const fields = hpack.decode(block);
    if (typeof fields === 'string') {
      fail(ErrorCode.COMPRESSION_ERROR, `bad header block: ${fields}`);
      return false;
    }
    const s = streams.get(streamId);
    if (s === undefined) {
      return streamId < nextStreamId || protocolError(`HEADERS on idle stream ${streamId}`);
    }
    const headers: H2Headers = {};
    for (const [name, value] of fields) {
      const prev = headers[name];
      headers[name] = prev === undefined ? value : `${prev}, ${value}`;
    }
    if (s.headersSeen && !end) return protocolError('a second header block without END_STREAM');
    s.headersSeen = true;
    s.events.onHeaders(headers, end);
    if (end && !closed) endStream(s);
    return !closed;
  }

  function onSettings(f: Frame): boolean {
    if (f.streamId !== 0) return protocolError('SETTINGS on a stream');
    if ((f.flags & Flag.ACK) !== 0) {
      if (f.payload.length !== 0) {
        fail(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
        return false;
      }
      return true;
    }
    const peer = readPeerSettings(f.payload);
    if (!peer.ok) {
      fail(peer.code, peer.message);
      return false;
    }
    if (peer.initialWindowSize !== undefined) {
      // RFC 9113 §6.9.2: the change applies to every open stream's window.
      const delta = peer.initialWindowSize - peerInitialWindow;
      peerInitialWindow = peer.initialWindowSize;
      for (const s of streams.values()) s.sendWindow += delta;
    }
    if (peer.maxFrameSize !== undefined) peerMaxFrameSize = peer.maxFrameSize;
    control.push(encodeFrame(FrameType.SETTINGS, Flag.ACK, 0));
    if (!connected) {
      connected = true;
      events.onConnect();
    }
    for (const s of streams.values()) pump(s);
    return !closed;
  }

  function onPing(f: Frame): boolean {
    if (f.streamId !== 0) return protocolError('PING on a stream');
    if (f.payload.length !== 8) {
      fail(ErrorCode.FRAME_SIZE_ERROR, `PING of ${f.payload.length} bytes`);
      return false;
    }
    if ((f.flags & Flag.ACK) === 0) {
      control.push(encodeFrame(FrameType.PING, Flag.ACK, 0, f.payload));
      return true;
    }
    const key = f.payload.toString('hex');
    const done = pings.get(key);
    pings.delete(key);
    done?.();
    return !closed;
  }

  function onGoaway(f: Frame): boolean {
    if (f.streamId !== 0) return protocolError('GOAWAY on a stream');
    if (f.payload.length < 8) {
      fail(ErrorCode.FRAME_SIZE_ERROR, `GOAWAY of ${f.payload.length} bytes`);
      return false;
    }
    const lastStreamId = f.payload.readUInt32BE(0) & MAX_WINDOW_SIZE;
    const code = f.payload.readUInt32BE(4);
    goingAway = true;
    events.onGoaway(code, lastStreamId);
    for (const s of [...streams.values()]) {
      if (closed) break;
      if (s.id > lastStreamId) {
        streams.delete(s.id);
        s.events.onReset(ErrorCode.REFUSED_STREAM);
      }
    }
    return !closed;
  }

  function onRstStream(f: Frame): boolean {
    if (f.streamId === 0) return protocolError('RST_STREAM on stream 0');
    if (f.payload.length !== 4) {
      fail(ErrorCode.FRAME_SIZE_ERROR, `RST_STREAM of ${f.payload.length} bytes`);
      return false;
    }
    const s = streams.get(f.streamId);
    if (s === undefined) {
      return f.streamId < nextStreamId || protocolError(`RST_STREAM on idle stream ${f.streamId}`);
    }
    streams.delete(s.id);
    s.events.onReset(f.payload.readUInt32BE(0));
    return !closed;
  }

  function onWindowUpdate(f: Frame): boolean {
    if (f.payload.length !== 4) {
      fail(ErrorCode.FRAME_SIZE_ERROR, `WINDOW_UPDATE of ${f.payload.length} bytes`);
      return false;
    }
    const increment = f.payload.readUInt32BE(0) & MAX_WINDOW_SIZE;
    if (increment === 0) return protocolError('WINDOW_UPDATE of 0');
    if (f.streamId === 0) {
      connSendWindow += increment;
      if (connSendWindow > MAX_WINDOW_SIZE) {
        fail(ErrorCode.FLOW_CONTROL_ERROR, 'the connection window over 2^31-1');
        return false;
      }
      for (const s of streams.values()) pump(s);
      return !closed;
    }
    const s = streams.get(f.streamId);
    if (s === undefined) return true;
    s.sendWindow += increment;
    if (s.sendWindow > MAX_WINDOW_SIZE) {
      fail(ErrorCode.FLOW_CONTROL_ERROR, `stream ${s.id}'s window over 2^31-1`);
      return false;
    }
    pump(s);
    return !closed;
  }

  /** Sends what the windows allow of `s`'s queue, as DATA frames in one socket write. */
  function pump(s: StreamState): void {
    if (closed || s.queuedBytes === 0 || streams.get(s.id) !== s) return;
    const budget = Math.min(s.sendWindow, connSendWindow, s.queuedBytes);
    if (budget <= 0) return;
    s.sendWindow -= budget;
    connSendWindow -= budget;
    s.queuedBytes -= budget;
    socket.write(takeDataFrames(s.queue, budget, peerMaxFrameSize, s.id));
  }

  return {
    request(headers, streamEvents) {
      if (closed) throw new H2Error(undefined, 'the HTTP/2 session is closed');
      if (goingAway) throw new H2Error(undefined, 'the peer sent GOAWAY: no new streams');
      const id = nextStreamId;
      nextStreamId += 2;
      const s: StreamState = {
        id,
        events: streamEvents,
        sendWindow: peerInitialWindow,
        queue: [],
        queuedBytes: 0,
        recvWindow: streamWindowBytes,
        recvUnacked: 0,
        headersSeen: false,
      };
      streams.set(id, s);
      const block = encodeHeaderBlock(headers);
      const parts: Buffer[] = [];
      for (let at = 0; at === 0 || at < block.length; at += peerMaxFrameSize) {
        const piece = block.subarray(at, at + peerMaxFrameSize);
        const last = at + peerMaxFrameSize >= block.length;
        const type = at === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
        parts.push(encodeFrame(type, last ? Flag.END_HEADERS : 0, id, piece));
      }
      socket.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
      return {
        write(data) {
          if (closed || streams.get(id) !== s || data.length === 0) return;
          s.queue.push(data);
          s.queuedBytes += data.length;
          pump(s);
        },
        get bufferedBytes() {
          return s.queuedBytes + (closed ? 0 : socket.writableLength);
        },
        close(code = ErrorCode.CANCEL) {
          if (streams.get(id) !== s) return;
          streams.delete(id);
          s.queue = [];
          s.queuedBytes = 0;
          if (!closed) socket.write(encodeRstStream(id, code));
        },
      };
    },
    ping(done) {
      if (closed) return;
      const payload = Buffer.alloc(8);
      payload.writeUInt32BE(++pingCounter >>> 0, 4);
      pings.set(payload.toString('hex'), done);
      socket.write(encodeFrame(FrameType.PING, 0, 0, payload));
    },
    destroy() {
      if (closed) return;
      closed = true;
      streams.clear();
      pings.clear();
      socket.destroy();
    },
  };
}
