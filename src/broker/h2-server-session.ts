/**
 * Our HTTP/2 server session (RFC 9113) on one connection, the `own` choice of `--http2-server`
 * (`server-stream.ts`): the client preface, SETTINGS both ways (acked; the peer's
 * INITIAL_WINDOW_SIZE and MAX_FRAME_SIZE honoured), flow control both ways (a stream's writes
 * wait in its queue while the peer's window is exhausted; our WINDOW_UPDATEs go once half a
 * window is consumed), PING (theirs acked, ours with a callback), GOAWAY (ours graceful: the
 * open streams run on and the connection ends after the last; theirs noted), RST_STREAM,
 * HEADERS with CONTINUATION (decoded by the protocol's HPACK), trailers, and
 * MAX_CONCURRENT_STREAMS (streams over it are refused). Unknown frame types and PRIORITY are
 * ignored. Frames and HPACK are `src/protocol/h2`'s, shared with the client session.
 *
 * Why not `node:http2`: at one push per wake-up its per-read and per-write machinery is most
 * of the broker's CPU per delivery (bench/results/notes.md, "Broker"); the socket is read with
 * `net`'s `onread` (`own-h2-server.ts`) and each flush of a stream is one socket write: its
 * gRPC frames copied behind their DATA frame headers into a region of the server's write slab
 * (`write-slab.ts`), and only a batch larger than a region, or one for a socket that has not
 * written out its last write yet, corked into one writev of the shared broadcast buffers.
 *
 * Untrusted bytes: a bad frame ends the connection with a GOAWAY naming the error (a stream's
 * own error resets that stream only); nothing the peer sends throws out of `receive`.
 * After our trailers, a stream the peer has not half-closed is reset with NO_ERROR (RFC 9113
 * §8.1), so that it does not linger.
 */
import type { Socket } from 'node:net';
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
  FRAME_HEADER_BYTES,
  type Frame,
  FrameType,
  MAX_WINDOW_SIZE,
  readPeerSettings,
  Setting,
  takeDataFrames,
  unpaddedPayload,
  writeFrameHeader,
} from '../protocol/h2/index.js';
import type { Clock } from '../util/index.js';
import { GRPC_RESPONSE_HEADERS, grpcTrailers } from './grpc-respond.js';
import type { CallStatus } from './grpc-status.js';
import type { FrameSource } from './outbound.js';
import {
  type H2ServerSettings,
  peerOf,
  type RequestHeaders,
  type ServerSession,
  type ServerStream,
  type ServerStreamEvents,
} from './server-stream.js';
import { createWriteSlab, WRITE_SLAB_MAX_REGION_BYTES, type WriteSlab } from './write-slab.js';

/** The largest header block (HEADERS + CONTINUATIONs) we buffer, and the largest decoded list. */
export const MAX_HEADER_BLOCK_BYTES = 64 * 1024;
/**
 * After our GOAWAY for a protocol error the socket is ended gracefully (the GOAWAY is read) and
 * cut this long later if the peer neither reads it nor closes, in ms.
 */
export const FAIL_GRACE_MS = 1000;

/** What the session needs of its socket (a `net.Socket`; a duplex in tests). */
export type H2ServerSocket = Pick<
  Socket,
  | 'write'
  | 'cork'
  | 'uncork'
  | 'end'
  | 'destroy'
  | 'destroyed'
  | 'writableLength'
  | 'writableHighWaterMark'
  | 'remoteAddress'
  | 'remotePort'
  | 'on'
>;

export interface H2ServerSessionEvents {
  /** A new request stream; the handler calls `listen` before returning. */
  onStream(stream: ServerStream): void;
  /** The peer broke the protocol: the session sent GOAWAY `code` and is closing (for logs). */
  onProtocolError?(code: number, message: string): void;
}

export interface H2ServerConnection {
  readonly session: ServerSession;
  /** Feeds bytes read from the socket (the caller owns reading: `onread` or 'data'). */
  receive(chunk: Buffer): void;
}

const RESPONSE_HEADERS_BLOCK = encodeHeaderBlock(GRPC_RESPONSE_HEADERS);

class OwnStream implements ServerStream {
  headersSent = false;
  ended = false;
  closed = false;
  /** The peer's END_STREAM arrived. */
  remoteEnded = false;
  /** The peer's window for our DATA on this stream (may go negative on a SETTINGS change). */
  sendWindow: number;
  /** DATA bytes waiting for window, oldest first; then, once ended, the trailers. */
  queue: Buffer[] = [];
  queuedBytes = 0;
  trailers: Buffer | undefined;
  /** Our window for the peer's DATA, and what was consumed without a WINDOW_UPDATE yet. */
  recvWindow: number;
  recvUnacked = 0;
  /** `write` returned false: `drain` is owed. */
  needDrain = false;
  events: ServerStreamEvents = {};
  closeCbs: (() => void)[] = [];

  constructor(
    readonly id: number,
    private readonly conn: OwnSession,
    readonly headers: RequestHeaders,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  get session(): ServerSession {
    return this.conn;
  }
  get bufferedBytes(): number {
    return this.queuedBytes + (this.closed ? 0 : this.conn.socketBuffered());
  }
  listen(events: ServerStreamEvents): void {
    this.events = events;
  }
  onClose(cb: () => void): void {
    if (this.closed) cb();
    else this.closeCbs.push(cb);
  }
  sendHeaders(): void {
    if (this.closed || this.headersSent) return;
    this.headersSent = true;
    this.conn.sendHeaderBlock(this.id, RESPONSE_HEADERS_BLOCK, false);
  }
  respondTrailersOnly(status: CallStatus): void {
    if (this.closed || this.headersSent) return;
    this.headersSent = true;
    this.ended = true;
    this.conn.sendHeaderBlock(
      this.id,
      encodeHeaderBlock([...GRPC_RESPONSE_HEADERS, ...grpcTrailers(status)]),
      true,
    );
    this.conn.localEnd(this);
  }
  respondHttpStatus(status: number): void {
    if (this.closed || this.headersSent) return;
    this.headersSent = true;
    this.ended = true;
    this.conn.sendHeaderBlock(this.id, encodeHeaderBlock([[':status', String(status)]]), true);
    this.conn.localEnd(this);
  }
  write(frame: Buffer): boolean {
    if (this.closed || this.ended) return true;
    return this.conn.sendData(this, frame, undefined, frame.length);
  }
  writeFrames(items: readonly FrameSource[]): boolean {
    if (this.closed || this.ended) return true;
    let total = 0;
    for (let i = 0; i < items.length; i++) total += items[i]!.frameLength;
    return this.conn.sendData(this, undefined, items, total);
  }
  end(status: CallStatus, last?: Buffer): void {
    if (this.closed || this.ended) return;
    if (!this.headersSent) {
      this.respondTrailersOnly(status);
      return;
    }
    if (last !== undefined && last.length > 0)
      this.conn.sendData(this, last, undefined, last.length);
    this.ended = true;
    this.trailers = this.conn.headerFrames(this.id, encodeHeaderBlock(grpcTrailers(status)), true);
    this.conn.pump(this);
  }
  reset(code: number): void {
    if (this.closed) return;
    this.conn.resetStream(this, code);
  }
}

class OwnSession implements ServerSession {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  closed = false;
  destroyed = false;
  private readonly streams = new Map<number, OwnStream>();
  /** The highest stream id the peer opened (what our GOAWAY names). */
  private lastPeerStreamId = 0;
  private prefaceLeft = CLIENT_PREFACE.length;
  private settingsSeen = false;
  // The peer's settings and our send windows.
  private peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  private peerInitialWindow = DEFAULT_WINDOW_SIZE;
  private connSendWindow = DEFAULT_WINDOW_SIZE;
  // Our receive window.
  private connRecvWindow: number;
  /** Our connection window: never below the 65,535 the peer starts with. */
  private readonly connWindow: number;
  private connRecvUnacked = 0;
  private readonly reader = createFrameReader(DEFAULT_MAX_FRAME_SIZE);
  private readonly hpack = createHpackDecoder(undefined, MAX_HEADER_BLOCK_BYTES);
  private continuation:
    | { streamId: number; endStream: boolean; parts: Buffer[]; bytes: number }
    | undefined;
  /** Control frames made while reading one chunk, written together after it. */
  private control: Buffer[] = [];
  private readonly pings = new Map<number, (err: Error | null) => void>();
  private pingCounter = 0;
  private readonly closeCbs: (() => void)[] = [];
  private readonly onFrameBound = (f: Frame) => this.onFrame(f);

  constructor(
    private readonly socket: H2ServerSocket,
    private readonly settings: H2ServerSettings,
    private readonly events: H2ServerSessionEvents,
    private readonly clock: Clock,
    private readonly slab: WriteSlab,
  ) {
    ({ remoteAddress: this.remoteAddress, remotePort: this.remotePort } = peerOf(socket));
    this.connWindow = Math.max(DEFAULT_WINDOW_SIZE, settings.connectionWindowBytes);
    this.connRecvWindow = this.connWindow;
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.onSocketClose());
    socket.on('drain', () => this.onSocketDrain());
    // The server preface (RFC 9113 §3.4): our SETTINGS, then the larger connection window.
    const window = this.connWindow - DEFAULT_WINDOW_SIZE;
    socket.write(
      Buffer.concat([
        encodeSettings([
          [Setting.MAX_CONCURRENT_STREAMS, settings.maxConcurrentStreams],
          [Setting.INITIAL_WINDOW_SIZE, settings.streamWindowBytes],
          [Setting.MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK_BYTES],
        ]),
        ...(window > 0 ? [encodeWindowUpdate(0, window)] : []),
      ]),
    );
  }

  // ---------------------------------------------------------------------------------------
  // ServerSession

  ping(cb: (err: Error | null) => void): boolean {
    if (this.destroyed) return false;
    const id = ++this.pingCounter >>> 0;
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(id, 4);
    this.pings.set(id, cb);
    this.socket.write(encodeFrame(FrameType.PING, 0, 0, payload));
    return true;
  }
  goAway(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.write(encodeGoaway(this.lastPeerStreamId, ErrorCode.NO_ERROR));
    this.endIfIdle();
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.closed = true;
    this.socket.destroy();
  }
  onClose(cb: () => void): void {
    this.closeCbs.push(cb);
  }

  // ---------------------------------------------------------------------------------------
  // Reading

  receive(chunk: Buffer): void {
    if (this.destroyed) return;
    try {
      let data = chunk;
      if (this.prefaceLeft > 0) {
        const n = Math.min(this.prefaceLeft, data.length);
        const at = CLIENT_PREFACE.length - this.prefaceLeft;
        if (!data.subarray(0, n).equals(CLIENT_PREFACE.subarray(at, at + n))) {
          this.fail(ErrorCode.PROTOCOL_ERROR, 'not the HTTP/2 client preface');
          return;
        }
        this.prefaceLeft -= n;
        data = data.subarray(n);
        if (data.length === 0) return;
      }
      const tooLarge = this.reader.push(data, this.onFrameBound);
      if (tooLarge !== undefined) this.fail(ErrorCode.FRAME_SIZE_ERROR, tooLarge);
      this.flushControl();
    } catch (err) {
      // A defect of ours or of a handler: end this connection, never the process.
      this.fail(ErrorCode.INTERNAL_ERROR, `internal error: ${(err as Error).message}`);
    }
  }

  private flushControl(): void {
    if (this.destroyed || this.control.length === 0) return;
    const c = this.control;
    this.control = [];
    this.socket.write(c.length === 1 ? c[0]! : Buffer.concat(c));
  }

  /** Ends the session for a connection error: GOAWAY `code`, then the socket. */
  private fail(code: number, message: string): false {
    if (this.destroyed) return false;
    this.control = [];
    this.events.onProtocolError?.(code, message);
    this.destroyed = true;
    this.closed = true;
    const goaway = encodeGoaway(this.lastPeerStreamId, code, message.slice(0, 200));
    this.socket.end(goaway);
    this.clock.setTimer(() => this.socket.destroy(), FAIL_GRACE_MS);
    return false;
  }
  private protocolError(message: string): false {
    return this.fail(ErrorCode.PROTOCOL_ERROR, message);
  }

  private onFrame(f: Frame): boolean {
    if (this.destroyed) return false;
    if (!this.settingsSeen) {
      if (f.type !== FrameType.SETTINGS || (f.flags & Flag.ACK) !== 0) {
        return this.protocolError(`the first frame was type ${f.type}, not SETTINGS`);
      }
    }
    if (this.continuation !== undefined && f.type !== FrameType.CONTINUATION) {
      return this.protocolError(`frame type ${f.type} inside a header block`);
    }
    switch (f.type) {
      case FrameType.DATA:
        return this.onData(f);
      case FrameType.HEADERS:
        return this.onHeaders(f);
      case FrameType.CONTINUATION:
        return this.onContinuation(f);
      case FrameType.SETTINGS:
        return this.onSettings(f);
      case FrameType.PING:
        return this.onPing(f);
      case FrameType.GOAWAY:
        // The peer opens no more streams; ours run on until they end.
        return f.streamId === 0 || this.protocolError('GOAWAY on a stream');
      case FrameType.RST_STREAM:
        return this.onRstStream(f);
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(f);
      case FrameType.PUSH_PROMISE:
        return this.protocolError('PUSH_PROMISE from a client');
      default:
        // PRIORITY and unknown types are ignored (RFC 9113 §4.1, §5.5).
        return true;
    }
  }

  private onData(f: Frame): boolean {
    if (f.streamId === 0) return this.protocolError('DATA on stream 0');
    const length = f.payload.length;
    if (length > this.connRecvWindow) {
      return this.fail(
        ErrorCode.FLOW_CONTROL_ERROR,
        `DATA of ${length} bytes past the connection window`,
      );
    }
    this.connRecvWindow -= length;
    this.connRecvUnacked += length;
    if (this.connRecvUnacked >= this.connWindow / 2) {
      this.control.push(encodeWindowUpdate(0, this.connRecvUnacked));
      this.connRecvWindow += this.connRecvUnacked;
      this.connRecvUnacked = 0;
    }
    const s = this.streams.get(f.streamId);
    if (s === undefined) {
      // A stream that closed (or was refused): its data counts against the connection only.
      return (
        f.streamId <= this.lastPeerStreamId ||
        this.protocolError(`DATA on idle stream ${f.streamId}`)
      );
    }
    if (s.remoteEnded) {
      this.resetStream(s, ErrorCode.STREAM_CLOSED);
      return true;
    }
    if (length > s.recvWindow) {
      return this.fail(
        ErrorCode.FLOW_CONTROL_ERROR,
        `DATA of ${length} bytes past stream ${s.id}'s window`,
      );
    }
    const body = unpaddedPayload(f, 0);
    if (body === undefined) return this.protocolError('DATA with bad padding');
    s.recvWindow -= length;
    s.recvUnacked += length;
    const end = (f.flags & Flag.END_STREAM) !== 0;
    if (!end && s.recvUnacked >= this.settings.streamWindowBytes / 2) {
      this.control.push(encodeWindowUpdate(s.id, s.recvUnacked));
      s.recvWindow += s.recvUnacked;
      s.recvUnacked = 0;
    }
    if (body.length > 0 && !s.closed) s.events.data?.(body);
    if (end) this.remoteEnd(s);
    return !this.destroyed;
  }

  private onHeaders(f: Frame): boolean {
    if (f.streamId === 0) return this.protocolError('HEADERS on stream 0');
    const extra = (f.flags & Flag.PRIORITY) !== 0 ? 5 : 0;
    const fragment = unpaddedPayload(f, extra);
    if (fragment === undefined) return this.protocolError('HEADERS with bad padding');
    const endStream = (f.flags & Flag.END_STREAM) !== 0;
    if ((f.flags & Flag.END_HEADERS) !== 0)
      return this.headerBlock(f.streamId, endStream, fragment);
    if (fragment.length > MAX_HEADER_BLOCK_BYTES) {
      return this.protocolError(`header block over ${MAX_HEADER_BLOCK_BYTES} bytes`);
    }
    this.continuation = {
      streamId: f.streamId,
      endStream,
      parts: [Buffer.from(fragment)],
      bytes: fragment.length,
    };
    return true;
  }

  private onContinuation(f: Frame): boolean {
    const c = this.continuation;
    if (c === undefined || f.streamId !== c.streamId) {
      return this.protocolError('CONTINUATION without a header block in progress on its stream');
    }
    c.bytes += f.payload.length;
    if (c.bytes > MAX_HEADER_BLOCK_BYTES) {
      return this.protocolError(`header block over ${MAX_HEADER_BLOCK_BYTES} bytes`);
    }
    c.parts.push(Buffer.from(f.payload));
    if ((f.flags & Flag.END_HEADERS) === 0) return true;
    this.continuation = undefined;
    return this.headerBlock(c.streamId, c.endStream, Buffer.concat(c.parts));
  }

  private headerBlock(streamId: number, end: boolean, block: Buffer): boolean {
    // Decoded whatever becomes of the stream: the table must follow the peer's.
    const fields = this.hpack.decode(block);
    if (typeof fields === 'string') {
      return this.fail(ErrorCode.COMPRESSION_ERROR, `bad header block: ${fields}`);
    }
    const open = this.streams.get(streamId);
    if (open !== undefined) {
      // Trailers: they must end the stream (RFC 9113 §8.1).
      if (!end || open.remoteEnded)
        return this.protocolError('a second header block without END_STREAM');
      this.remoteEnd(open);
      return !this.destroyed;
    }
    if ((streamId & 1) === 0 || streamId <= this.lastPeerStreamId) {
      return this.protocolError(
        `HEADERS opening stream ${streamId} (even, or not above ${this.lastPeerStreamId})`,
      );
    }
    this.lastPeerStreamId = streamId;
    if (this.closed) {
      // After our GOAWAY: not processed (its id is above the one our GOAWAY named).
      this.control.push(encodeRstStream(streamId, ErrorCode.REFUSED_STREAM));
      return true;
    }
    if (this.streams.size >= this.settings.maxConcurrentStreams) {
      this.control.push(encodeRstStream(streamId, ErrorCode.REFUSED_STREAM));
      return true;
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of fields) {
      const prev = headers[name];
      headers[name] = prev === undefined ? value : `${prev}, ${value}`;
    }
    if (headers[':method'] === undefined || headers[':path'] === undefined) {
      this.control.push(encodeRstStream(streamId, ErrorCode.PROTOCOL_ERROR));
      return true;
    }
    const s = new OwnStream(
      streamId,
      this,
      headers,
      this.peerInitialWindow,
      this.settings.streamWindowBytes,
    );
    this.streams.set(streamId, s);
    this.events.onStream(s);
    if (end && !s.closed) this.remoteEnd(s);
    return !this.destroyed;
  }

  private remoteEnd(s: OwnStream): void {
    if (s.remoteEnded || s.closed) return;
    s.remoteEnded = true;
    s.events.end?.();
  }

  private onSettings(f: Frame): boolean {
    if (f.streamId !== 0) return this.protocolError('SETTINGS on a stream');
    if ((f.flags & Flag.ACK) !== 0) {
      if (f.payload.length !== 0)
        return this.fail(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return true;
    }
    const peer = readPeerSettings(f.payload);
    if (!peer.ok) return this.fail(peer.code, peer.message);
    if (peer.initialWindowSize !== undefined) {
      // RFC 9113 §6.9.2: the change applies to every open stream's window.
      const delta = peer.initialWindowSize - this.peerInitialWindow;
      this.peerInitialWindow = peer.initialWindowSize;
      for (const s of this.streams.values()) s.sendWindow += delta;
    }
    if (peer.maxFrameSize !== undefined) this.peerMaxFrameSize = peer.maxFrameSize;
    this.settingsSeen = true;
    this.control.push(encodeFrame(FrameType.SETTINGS, Flag.ACK, 0));
    for (const s of this.streams.values()) this.pump(s);
    return !this.destroyed;
  }

  private onPing(f: Frame): boolean {
    if (f.streamId !== 0) return this.protocolError('PING on a stream');
    if (f.payload.length !== 8)
      return this.fail(ErrorCode.FRAME_SIZE_ERROR, `PING of ${f.payload.length} bytes`);
    if ((f.flags & Flag.ACK) === 0) {
      this.control.push(encodeFrame(FrameType.PING, Flag.ACK, 0, f.payload));
      return true;
    }
    const id = f.payload.readUInt32BE(4);
    const done = this.pings.get(id);
    this.pings.delete(id);
    done?.(null);
    return !this.destroyed;
  }

  private onRstStream(f: Frame): boolean {
    if (f.streamId === 0) return this.protocolError('RST_STREAM on stream 0');
    if (f.payload.length !== 4)
      return this.fail(ErrorCode.FRAME_SIZE_ERROR, `RST_STREAM of ${f.payload.length} bytes`);
    const s = this.streams.get(f.streamId);
    if (s === undefined) {
      return (
        f.streamId <= this.lastPeerStreamId ||
        this.protocolError(`RST_STREAM on idle stream ${f.streamId}`)
      );
    }
    this.closeStream(s);
    return !this.destroyed;
  }

  private onWindowUpdate(f: Frame): boolean {
    if (f.payload.length !== 4)
      return this.fail(ErrorCode.FRAME_SIZE_ERROR, `WINDOW_UPDATE of ${f.payload.length} bytes`);
    const increment = f.payload.readUInt32BE(0) & MAX_WINDOW_SIZE;
    if (f.streamId === 0) {
      if (increment === 0) return this.protocolError('WINDOW_UPDATE of 0');
      this.connSendWindow += increment;
      if (this.connSendWindow > MAX_WINDOW_SIZE) {
        return this.fail(ErrorCode.FLOW_CONTROL_ERROR, 'the connection window over 2^31-1');
      }
      for (const s of this.streams.values()) this.pump(s);
      return !this.destroyed;
    }
    const s = this.streams.get(f.streamId);
    if (s === undefined) return true;
    if (increment === 0) {
      this.resetStream(s, ErrorCode.PROTOCOL_ERROR);
      return true;
    }
    s.sendWindow += increment;
    if (s.sendWindow > MAX_WINDOW_SIZE) {
      this.resetStream(s, ErrorCode.FLOW_CONTROL_ERROR);
      return true;
    }
    this.pump(s);
    return !this.destroyed;
  }

  // ---------------------------------------------------------------------------------------
  // Writing

  socketBuffered(): number {
    return this.destroyed ? 0 : this.socket.writableLength;
  }

  /** HEADERS (+ CONTINUATIONs) carrying `block`, as one buffer. */
  headerFrames(id: number, block: Buffer, endStream: boolean): Buffer {
    const max = this.peerMaxFrameSize;
    const end = endStream ? Flag.END_STREAM : 0;
    if (block.length <= max)
      return encodeFrame(FrameType.HEADERS, Flag.END_HEADERS | end, id, block);
    const parts: Buffer[] = [];
    for (let at = 0; at < block.length; at += max) {
      const last = at + max >= block.length;
      const type = at === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
      const flags = (last ? Flag.END_HEADERS : 0) | (at === 0 ? end : 0);
      parts.push(encodeFrame(type, flags, id, block.subarray(at, at + max)));
    }
    return Buffer.concat(parts);
  }

  sendHeaderBlock(id: number, block: Buffer, endStream: boolean): void {
    if (this.destroyed) return;
    this.socket.write(this.headerFrames(id, block, endStream));
  }

  /**
   * Writes `one` (or `items`, `total` bytes in all) as DATA on `s`: at once when nothing waits
   * and the windows allow, else into the stream's queue. False: wait for `drain`.
   */
  sendData(
    s: OwnStream,
    one: Buffer | undefined,
    items: readonly FrameSource[] | undefined,
    total: number,
  ): boolean {
    if (this.destroyed || total === 0) return true;
    if (s.queuedBytes === 0 && total <= s.sendWindow && total <= this.connSendWindow) {
      s.sendWindow -= total;
      this.connSendWindow -= total;
      const bytes = total + Math.ceil(total / this.peerMaxFrameSize) * FRAME_HEADER_BYTES;
      // A socket that still holds unwritten bytes will hold these too: written corked over the
      // frames themselves, so that a subscriber that falls behind pins no slab memory of its own.
      if (bytes <= WRITE_SLAB_MAX_REGION_BYTES && this.socket.writableLength === 0) {
        this.writeCopied(s.id, one, items, total, bytes);
      } else this.writeCorked(s.id, one, items, total);
    } else {
      if (one !== undefined) s.queue.push(one);
      else for (let i = 0; i < items!.length; i++) s.queue.push(items![i]!.frame);
      s.queuedBytes += total;
      this.pump(s);
    }
    if (s.queuedBytes > 0 || this.socket.writableLength >= this.socket.writableHighWaterMark) {
      s.needDrain = true;
      return false;
    }
    return true;
  }

  /**
   * DATA frames of at most the peer's frame size, `bytes` in all with their headers, copied into
   * a region of the write slab and written with one `write`. Each gRPC frame inside one DATA
   * frame is copied by its source (a broadcast writes its header and the publisher's bytes
   * straight in: `FrameSource.copyFrame`); one that straddles two is copied in parts.
   */
  private writeCopied(
    id: number,
    one: Buffer | undefined,
    items: readonly FrameSource[] | undefined,
    total: number,
    bytes: number,
  ): void {
    const out = this.slab.take(bytes);
    const max = this.peerMaxFrameSize;
    let at = 0;
    let room = 0;
    let left = total;
    const n = one !== undefined ? 1 : items!.length;
    for (let k = 0; k < n; k++) {
      if (one === undefined) {
        const item = items![k]!;
        const len = item.frameLength;
        if (room === 0 && len > 0) {
          room = Math.min(max, left);
          left -= room;
          writeFrameHeader(out, at, room, FrameType.DATA, 0, id);
          at += FRAME_HEADER_BYTES;
        }
        if (len <= room) {
          item.copyFrame(out, at);
          at += len;
          room -= len;
          continue;
        }
      }
      const b = one ?? items![k]!.frame;
      let i = 0;
      while (i < b.length) {
        if (room === 0) {
          room = Math.min(max, left);
          left -= room;
          writeFrameHeader(out, at, room, FrameType.DATA, 0, id);
          at += FRAME_HEADER_BYTES;
        }
        const take = Math.min(room, b.length - i);
        out.set(i === 0 && take === b.length ? b : b.subarray(i, i + take), at);
        at += take;
        i += take;
        room -= take;
      }
    }
    this.socket.write(out);
    // Written out already (the kernel took it): the next flush may use the same bytes.
    this.slab.written(this.socket.writableLength > 0);
  }

  /** DATA frames of at most the peer's frame size over the shared buffers, in one writev. */
  private writeCorked(
    id: number,
    one: Buffer | undefined,
    items: readonly FrameSource[] | undefined,
    total: number,
  ): void {
    const max = this.peerMaxFrameSize;
    const frames = Math.ceil(total / max);
    const headers = Buffer.allocUnsafe(frames * FRAME_HEADER_BYTES);
    const socket = this.socket;
    socket.cork();
    let frame = 0;
    let room = 0;
    let left = total;
    const put = (buf: Buffer): void => {
      let b = buf;
      while (b.length > 0) {
        if (room === 0) {
          const n = Math.min(max, left);
          const h = headers.subarray(frame * FRAME_HEADER_BYTES, (frame + 1) * FRAME_HEADER_BYTES);
          writeFrameHeader(h, 0, n, FrameType.DATA, 0, id);
          socket.write(h);
          frame++;
          room = n;
          left -= n;
        }
        const take = Math.min(room, b.length);
        socket.write(take === b.length ? b : b.subarray(0, take));
        room -= take;
        b = b.subarray(take);
      }
    };
    if (one !== undefined) put(one);
    else for (let i = 0; i < items!.length; i++) put(items![i]!.frame);
    socket.uncork();
  }

  /** Sends what the windows allow of `s`'s queue (one buffer), then its trailers once it is empty. */
  pump(s: OwnStream): void {
    if (this.destroyed || s.closed) return;
    const budget = Math.min(s.sendWindow, this.connSendWindow, s.queuedBytes);
    if (budget > 0) {
      s.sendWindow -= budget;
      this.connSendWindow -= budget;
      s.queuedBytes -= budget;
      this.socket.write(takeDataFrames(s.queue, budget, this.peerMaxFrameSize, s.id));
    }
    if (s.queuedBytes > 0) return;
    if (s.trailers !== undefined) {
      const t = s.trailers;
      s.trailers = undefined;
      this.socket.write(t);
      this.localEnd(s);
      return;
    }
    if (s.needDrain && this.socket.writableLength < this.socket.writableHighWaterMark) {
      s.needDrain = false;
      s.events.drain?.();
    }
  }

  /** Our END_STREAM went out: the stream is done (the peer's side is reset if still open). */
  localEnd(s: OwnStream): void {
    if (s.closed) return;
    if (!s.remoteEnded && !this.destroyed) {
      this.socket.write(encodeRstStream(s.id, ErrorCode.NO_ERROR));
    }
    this.closeStream(s);
  }

  resetStream(s: OwnStream, code: number): void {
    if (s.closed) return;
    if (!this.destroyed) this.socket.write(encodeRstStream(s.id, code));
    this.closeStream(s);
  }

  private closeStream(s: OwnStream): void {
    if (s.closed) return;
    s.closed = true;
    s.queue = [];
    s.queuedBytes = 0;
    s.trailers = undefined;
    this.streams.delete(s.id);
    const cbs = s.closeCbs;
    s.closeCbs = [];
    for (const cb of cbs) cb();
    this.endIfIdle();
  }

  private endIfIdle(): void {
    if (this.closed && !this.destroyed && this.streams.size === 0) {
      this.destroyed = true;
      this.socket.end();
    }
  }

  private onSocketDrain(): void {
    for (const s of this.streams.values()) {
      if (s.needDrain && s.queuedBytes === 0 && !s.closed) {
        s.needDrain = false;
        s.events.drain?.();
      }
    }
  }

  private onSocketClose(): void {
    this.destroyed = true;
    this.closed = true;
    const gone = new Error('the HTTP/2 session closed');
    for (const cb of this.pings.values()) cb(gone);
    this.pings.clear();
    for (const s of [...this.streams.values()]) this.closeStream(s);
    const cbs = this.closeCbs.splice(0);
    for (const cb of cbs) cb();
  }
}

/** Starts a server session on a connected socket (our SETTINGS go out at once). */
export function createH2ServerSession(
  socket: H2ServerSocket,
  settings: H2ServerSettings,
  events: H2ServerSessionEvents,
  clock: Clock,
  /** Where flushes are copied before their write: the server's, shared by its sessions. */
  slab: WriteSlab = createWriteSlab(),
): H2ServerConnection {
  const session = new OwnSession(socket, settings, events, clock, slab);
  return {
    session,
    receive: (chunk) => session.receive(chunk),
  };
}
