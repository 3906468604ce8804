/**
 * The own HTTP/2 server session over an in-memory socket: the test plays the client, writing
 * frames with the protocol's encoders and reading the server's back with its frame reader.
 */
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { frameCollector, type SeenFrame } from '../protocol/h2/frame-collector.test-support.js';
import {
  CLIENT_PREFACE,
  createHpackDecoder,
  ErrorCode,
  encodeFrame,
  encodeGoaway,
  encodeHeaderBlock,
  encodeRstStream,
  encodeSettings,
  encodeWindowUpdate,
  Flag,
  FrameType,
  type HeaderField,
  Setting,
} from '../protocol/h2/index.js';
import { createFakeClock } from '../util/index.js';
import { createH2ServerSession, FAIL_GRACE_MS, type H2ServerSocket } from './h2-server-session.js';
import type { FrameSource } from './outbound.js';
import type { H2ServerSettings, ServerStream } from './server-stream.js';
import { WRITE_SLAB_BYTES } from './write-slab.js';

const REQUEST: HeaderField[] = [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':path', '/a.B/C'],
  [':authority', 'test'],
  ['content-type', 'application/grpc'],
];

const SETTINGS: H2ServerSettings = {
  streamWindowBytes: 1000,
  connectionWindowBytes: 100_000,
  maxConcurrentStreams: 10,
};

/**
 * A server session on an in-memory socket; the test is the client. Writes complete at once (a
 * chunk is then the writer's again, as a kernel socket's once it took the bytes: the harness
 * keeps a copy; with `keepChunks`, the chunk itself, to see which bytes were written), or with
 * `asyncWrites` only in a later turn (the chunk kept, as a socket whose kernel buffer is full).
 */
function harness(
  settings: H2ServerSettings = SETTINGS,
  options: { asyncWrites?: boolean; keepChunks?: boolean } = {},
) {
  const toClient: Buffer[] = [];
  const keep = (c: Buffer) =>
    toClient.push(options.asyncWrites || options.keepChunks ? c : Buffer.from(c));
  const done = (cb: () => void) => (options.asyncWrites ? setImmediate(cb) : cb());
  /** Socket writes (a corked batch is one), for the one-write-per-flush checks. */
  let writes = 0;
  let ended = false;
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      writes++;
      keep(chunk);
      done(cb);
    },
    writev(chunks, cb) {
      writes++;
      for (const c of chunks) keep(c.chunk as Buffer);
      done(cb);
    },
    final(cb) {
      ended = true;
      cb();
    },
  });
  Object.assign(socket, { remoteAddress: '10.0.0.1', remotePort: 4242 });
  const streams: ServerStream[] = [];
  const log: string[] = [];
  const errors: number[] = [];
  let onStream = (s: ServerStream) => {
    s.listen({
      data: (c) => log.push(`data ${s.headers[':path']} ${c.toString('latin1')}`),
      end: () => log.push('end'),
      drain: () => log.push('drain'),
    });
    s.onClose(() => log.push(`close ${(s as unknown as { id: number }).id}`));
  };
  const clock = createFakeClock();
  const conn = createH2ServerSession(
    socket as unknown as H2ServerSocket,
    settings,
    {
      onStream: (s) => {
        streams.push(s);
        onStream(s);
      },
      onProtocolError: (code) => errors.push(code),
    },
    clock,
  );
  const hpack = createHpackDecoder();
  /** Frames the server wrote since the last call. */
  const frames = frameCollector(toClient);
  const send = (...bufs: Buffer[]): void => conn.receive(Buffer.concat(bufs));
  const headersOf = (f: SeenFrame) => {
    const fields = hpack.decode(f.payload);
    if (typeof fields === 'string') throw new Error(fields);
    return Object.fromEntries(fields);
  };
  /** Preface and SETTINGS, and the server's preface read. */
  const open = (peer: [number, number][] = []) => {
    send(CLIENT_PREFACE, encodeSettings(peer));
    return frames();
  };
  const request = (id: number, endStream = false, fields = REQUEST) =>
    encodeFrame(
      FrameType.HEADERS,
      Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0),
      id,
      encodeHeaderBlock(fields),
    );
  return {
    conn,
    clock,
    socket,
    toClient,
    streams,
    log,
    errors,
    frames,
    send,
    open,
    request,
    headersOf,
    writes: () => writes,
    ended: () => ended,
    setOnStream: (f: (s: ServerStream) => void) => {
      onStream = f;
    },
  };
}

/** The harness's session opened with 1 MiB windows both ways and stream 1 requested, its headers sent. */
function openWideStream(h: ReturnType<typeof harness>) {
  h.open([[Setting.INITIAL_WINDOW_SIZE, 1 << 20]]);
  h.send(encodeWindowUpdate(0, 1 << 20));
  h.send(h.request(1));
  const s = h.streams[0]!;
  s.sendHeaders();
  return s;
}

const types = (fs: SeenFrame[]) => fs.map((f) => f.type);
const goawayCode = (f: SeenFrame | undefined) => f?.payload.readUInt32BE(4);
/** A gRPC frame to write that is already a Buffer. */
const src = (frame: Buffer): FrameSource => ({
  frame,
  frameLength: frame.length,
  copyFrame: (out, at) => out.set(frame, at),
});

describe('own HTTP/2 server session', () => {
  it('sends its SETTINGS and connection window at once, and acks the peer’s', () => {
    const h = harness();
    const first = h.frames();
    expect(types(first)).toEqual([FrameType.SETTINGS, FrameType.WINDOW_UPDATE]);
    const ids = [];
    for (let i = 0; i < first[0]!.payload.length; i += 6) {
      ids.push([first[0]!.payload.readUInt16BE(i), first[0]!.payload.readUInt32BE(i + 2)]);
    }
    expect(ids).toContainEqual([Setting.MAX_CONCURRENT_STREAMS, 10]);
    expect(ids).toContainEqual([Setting.INITIAL_WINDOW_SIZE, 1000]);
    expect(h.open()).toEqual([
      { type: FrameType.SETTINGS, flags: Flag.ACK, streamId: 0, payload: Buffer.alloc(0) },
    ]);
  });

  it('accepts the preface split across reads', () => {
    const h = harness();
    h.frames();
    h.send(CLIENT_PREFACE.subarray(0, 5));
    h.send(CLIENT_PREFACE.subarray(5), encodeSettings([]).subarray(0, 4));
    h.send(encodeSettings([]).subarray(4));
    expect(types(h.frames())).toEqual([FrameType.SETTINGS]);
    expect(h.errors).toEqual([]);
  });

  it('refuses what is not the preface, and a first frame that is not SETTINGS', () => {
    const a = harness();
    a.frames();
    a.send(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    expect(goawayCode(a.frames().at(-1))).toBe(ErrorCode.PROTOCOL_ERROR);
    const b = harness();
    b.frames();
    b.send(CLIENT_PREFACE, encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8)));
    expect(goawayCode(b.frames().at(-1))).toBe(ErrorCode.PROTOCOL_ERROR);
    expect(b.conn.session.destroyed).toBe(true);
  });

  it('serves a call: headers, gRPC frames in one DATA, trailers, then NO_ERROR reset', () => {
    const h = harness();
    h.open();
    h.send(h.request(1));
    const s = h.streams[0]!;
    expect(s.headers[':path']).toBe('/a.B/C');
    expect(s.session.remoteAddress).toBe('10.0.0.1');
    h.send(encodeFrame(FrameType.DATA, 0, 1, Buffer.from('hello')));
    expect(h.log).toEqual(['data /a.B/C hello']);
    s.sendHeaders();
    const before = h.writes();
    expect(s.writeFrames([src(Buffer.from('ab')), src(Buffer.from('cd'))])).toBe(true);
    expect(h.writes() - before).toBe(1);
    s.end({ code: 3, message: 'bad 100%' });
    const out = h.frames();
    expect(types(out)).toEqual([
      FrameType.HEADERS,
      FrameType.DATA,
      FrameType.HEADERS,
      FrameType.RST_STREAM,
    ]);
    expect(h.headersOf(out[0]!)).toEqual({
      ':status': '200',
      'content-type': 'application/grpc',
      'grpc-accept-encoding': 'identity',
    });
    expect(out[1]!.payload.toString()).toBe('abcd');
    expect(out[2]!.flags & Flag.END_STREAM).toBe(Flag.END_STREAM);
    expect(h.headersOf(out[2]!)).toEqual({ 'grpc-status': '3', 'grpc-message': 'bad 100%25' });
    expect(out[3]!.payload.readUInt32BE(0)).toBe(ErrorCode.NO_ERROR);
    expect(s.closed).toBe(true);
    expect(h.log.at(-1)).toBe('close 1');
  });

  it('a half-closed call ends with its trailers and no reset; trailers-only and HTTP answers', () => {
    const h = harness();
    h.open();
    h.send(h.request(1, true));
    expect(h.log).toEqual(['end']);
    h.streams[0]!.sendHeaders();
    h.streams[0]!.end({ code: 0, message: '' }, Buffer.from('last'));
    expect(types(h.frames())).toEqual([FrameType.HEADERS, FrameType.DATA, FrameType.HEADERS]);
    h.send(h.request(3));
    h.streams[1]!.respondTrailersOnly({ code: 12, message: 'nope' });
    const [only, rst] = h.frames();
    expect(only!.flags).toBe(Flag.END_HEADERS | Flag.END_STREAM);
    expect(h.headersOf(only!)).toMatchObject({ ':status': '200', 'grpc-status': '12' });
    expect(rst!.type).toBe(FrameType.RST_STREAM);
    h.send(h.request(5, true));
    h.streams[2]!.respondHttpStatus(415);
    expect(h.headersOf(h.frames()[0]!)).toEqual({ ':status': '415' });
  });

  it('reads a header block split into CONTINUATIONs, and trailers as the end', () => {
    const h = harness();
    h.open();
    const block = encodeHeaderBlock([...REQUEST, ['x-big', 'v'.repeat(100)]]);
    h.send(
      encodeFrame(FrameType.HEADERS, 0, 1, block.subarray(0, 10)),
      encodeFrame(FrameType.CONTINUATION, 0, 1, block.subarray(10, 50)),
      encodeFrame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(50)),
    );
    expect(h.streams[0]!.headers['x-big']).toBe('v'.repeat(100));
    h.send(
      encodeFrame(
        FrameType.HEADERS,
        Flag.END_HEADERS | Flag.END_STREAM,
        1,
        encodeHeaderBlock([['x-t', '1']]),
      ),
    );
    expect(h.log).toEqual(['end']);
  });

  it('holds DATA past the peer’s stream window, sends it on WINDOW_UPDATE, then drains', () => {
    const h = harness();
    h.open([[Setting.INITIAL_WINDOW_SIZE, 10]]);
    h.send(h.request(1));
    const s = h.streams[0]!;
    s.sendHeaders();
    h.frames();
    expect(s.write(Buffer.from('0123456789abcdefghijklmno'))).toBe(false);
    expect(s.bufferedBytes).toBe(15);
    s.end({ code: 0, message: '' });
    let out = h.frames();
    expect(out.map((f) => f.payload.toString())).toEqual(['0123456789']);
    h.send(encodeWindowUpdate(1, 10));
    out = h.frames();
    expect(out.map((f) => f.payload.toString())).toEqual(['abcdefghij']);
    h.send(encodeWindowUpdate(1, 100));
    out = h.frames();
    expect(types(out)).toEqual([FrameType.DATA, FrameType.HEADERS, FrameType.RST_STREAM]);
    expect(out[0]!.payload.toString()).toBe('klmno');
  });

  it('applies a changed INITIAL_WINDOW_SIZE to open streams, and drains after it', () => {
    const h = harness();
    h.open([[Setting.INITIAL_WINDOW_SIZE, 4]]);
    h.send(h.request(1));
    const s = h.streams[0]!;
    s.sendHeaders();
    h.frames();
    expect(s.write(Buffer.from('abcdef'))).toBe(false);
    expect(h.frames().map((f) => f.payload.toString())).toEqual(['abcd']);
    h.send(encodeSettings([[Setting.INITIAL_WINDOW_SIZE, 100]]));
    const out = h.frames();
    expect(out.map((f) => [f.type, f.payload.toString()])).toEqual([
      [FrameType.DATA, 'ef'],
      [FrameType.SETTINGS, ''],
    ]);
    expect(h.log).toContain('drain');
  });

  it('splits DATA at the peer’s MAX_FRAME_SIZE, and honours a larger one', () => {
    const h = harness();
    const s = openWideStream(h);
    h.frames();
    const big = Buffer.alloc(40_000, 7);
    s.writeFrames([src(big), src(Buffer.from('x'))]);
    expect(h.frames().map((f) => f.payload.length)).toEqual([16_384, 16_384, 7_233]);
    h.send(encodeSettings([[Setting.MAX_FRAME_SIZE, 32_768]]));
    h.frames();
    s.write(big);
    expect(h.frames().map((f) => f.payload.length)).toEqual([32_768, 7_232]);
  });

  it('copies each gRPC frame by its source, and takes a Buffer only of one that straddles two DATA frames', () => {
    const h = harness();
    const s = openWideStream(h);
    h.frames();
    const asked: number[] = [];
    const lazy = (fill: number, n: number): FrameSource => ({
      frameLength: n,
      get frame() {
        asked.push(fill);
        return Buffer.alloc(n, fill);
      },
      copyFrame: (out, at) => {
        out.fill(fill, at, at + n);
      },
    });
    // 10,000 + 10,000 + 100 B: the second straddles the first DATA frame (16,384 B).
    expect(s.writeFrames([lazy(1, 10_000), lazy(2, 10_000), lazy(3, 100)])).toBe(true);
    expect(asked).toEqual([2]);
    const data = h.frames();
    expect(data.map((f) => f.payload.length)).toEqual([16_384, 3_716]);
    expect(Buffer.concat(data.map((f) => f.payload))).toEqual(
      Buffer.concat([Buffer.alloc(10_000, 1), Buffer.alloc(10_000, 2), Buffer.alloc(100, 3)]),
    );
  });

  it('copies a flush into the write slab: its bytes used again once written out, never while pending', async () => {
    const flushes = async (h: ReturnType<typeof harness>, n: number, bytes: number) => {
      h.open([[Setting.INITIAL_WINDOW_SIZE, 1 << 30]]);
      h.send(encodeWindowUpdate(0, (1 << 30) - 65_535));
      h.send(h.request(1));
      const s = h.streams[0]!;
      s.sendHeaders();
      h.frames();
      const first = h.toClient.length;
      for (let i = 0; i < n; i++) {
        s.writeFrames([src(Buffer.alloc(bytes, i)), src(Buffer.alloc(bytes, i + 1))]);
        // Each flush finds the socket written out (an async write completes a turn later).
        while (h.socket.writableLength > 0) await new Promise((r) => setImmediate(r));
      }
      return h.toClient.slice(first);
    };
    // Written out at once: every flush from the same bytes.
    const reused = await flushes(harness(SETTINGS, { keepChunks: true }), 3, 1000);
    expect(reused).toHaveLength(3);
    for (const c of reused) {
      expect(c.buffer).toBe(reused[0]!.buffer);
      expect(c.byteOffset).toBe(reused[0]!.byteOffset);
    }
    // Pending: 300 flushes of 4,009 B (past one 256 KiB slab) keep their bytes until written.
    const h = harness(SETTINGS, { asyncWrites: true });
    const pending = await flushes(h, 300, 2000);
    // Regions of five slabs, none handed out twice (the contents below stay intact).
    const slabs = pending.filter((c) => c.buffer.byteLength === WRITE_SLAB_BYTES);
    expect(new Set(slabs.map((c) => c.buffer)).size).toBe(5);
    const data = h.frames().filter((f) => f.type === FrameType.DATA);
    expect(data).toHaveLength(300);
    data.forEach((f, i) => {
      expect(f.payload).toEqual(Buffer.concat([Buffer.alloc(2000, i), Buffer.alloc(2000, i + 1)]));
    });
  });

  it('writes a flush for a socket still writing its last one corked, over the frames', () => {
    const h = harness(SETTINGS, { asyncWrites: true });
    const s = openWideStream(h);
    const parts = [Buffer.alloc(3000, 1), Buffer.alloc(3000, 2)];
    expect(h.socket.writableLength).toBeGreaterThan(0);
    s.writeFrames(parts.map(src));
    expect(h.toClient.some((c) => c.buffer === parts[1]!.buffer)).toBe(false);
    return new Promise<void>((resolve) => {
      const check = () => {
        if (h.socket.writableLength > 0) return setImmediate(check);
        expect(h.toClient.some((c) => c.buffer === parts[1]!.buffer)).toBe(true);
        const data = h.frames().filter((f) => f.type === FrameType.DATA);
        expect(Buffer.concat(data.map((f) => f.payload))).toEqual(Buffer.concat(parts));
        resolve();
      };
      check();
    });
  });

  it('writes a flush larger than a slab region corked, over the frames themselves', () => {
    const h = harness(SETTINGS, { keepChunks: true });
    const s = openWideStream(h);
    h.frames();
    const parts = [Buffer.alloc(30_000, 1), Buffer.alloc(30_000, 2), Buffer.alloc(30_000, 3)];
    const before = h.writes();
    s.writeFrames(parts.map(src));
    expect(h.writes() - before).toBe(1);
    expect(h.toClient.some((c) => c.buffer === parts[1]!.buffer)).toBe(true);
    const data = h.frames();
    expect(data.map((f) => f.payload.length)).toEqual([
      16_384, 16_384, 16_384, 16_384, 16_384, 8_080,
    ]);
    expect(Buffer.concat(data.map((f) => f.payload))).toEqual(Buffer.concat(parts));
  });

  it('sends WINDOW_UPDATEs for the peer’s DATA at half a window, stream and connection', () => {
    const h = harness();
    h.open();
    h.send(h.request(1));
    h.send(encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(499)));
    expect(h.frames()).toEqual([]);
    h.send(encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(1)));
    expect(h.frames().map((f) => [f.streamId, f.payload.readUInt32BE(0)])).toEqual([[1, 500]]);
    // The connection's window (100,000) is acked at half, in the same read's control frames.
    const updates: number[][] = [];
    for (let i = 0; i < 99; i++) {
      h.send(encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(500)));
      updates.push(...h.frames().map((f) => [f.streamId, f.payload.readUInt32BE(0)]));
    }
    expect(updates.filter(([id]) => id === 0)).toEqual([[0, 50_000]]);
    expect(updates.filter(([id]) => id === 1)).toHaveLength(99);
  });

  it('a peer past its window is a FLOW_CONTROL_ERROR', () => {
    const h = harness();
    h.open();
    h.send(h.request(1));
    h.send(encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(1001)));
    expect(goawayCode(h.frames().at(-1))).toBe(ErrorCode.FLOW_CONTROL_ERROR);
  });

  it('acks PINGs; ours get their callback at the ACK, or an error when the session closes', async () => {
    const h = harness();
    h.open();
    const payload = Buffer.from('12345678');
    h.send(encodeFrame(FrameType.PING, 0, 0, payload));
    expect(h.frames()).toEqual([{ type: FrameType.PING, flags: Flag.ACK, streamId: 0, payload }]);
    const acks: (Error | null)[] = [];
    expect(h.conn.session.ping((e) => acks.push(e))).toBe(true);
    const ping = h.frames()[0]!;
    expect([ping.type, ping.flags]).toEqual([FrameType.PING, 0]);
    h.send(encodeFrame(FrameType.PING, Flag.ACK, 0, ping.payload));
    expect(acks).toEqual([null]);
    h.conn.session.ping((e) => acks.push(e));
    const closed = new Promise<void>((r) => h.conn.session.onClose(r));
    h.conn.session.destroy();
    await closed;
    expect(acks[1]).toBeInstanceOf(Error);
    expect(h.conn.session.ping(() => {})).toBe(false);
  });

  it('GOAWAY: names the last stream, refuses newer ones, ends the connection after the last', () => {
    const h = harness();
    h.open();
    h.send(h.request(1));
    h.conn.session.goAway();
    expect(h.conn.session.closed).toBe(true);
    const [goaway] = h.frames();
    expect(goaway!.type).toBe(FrameType.GOAWAY);
    expect([goaway!.payload.readUInt32BE(0), goawayCode(goaway)]).toEqual([1, ErrorCode.NO_ERROR]);
    h.send(h.request(3));
    const [refused] = h.frames();
    expect([refused!.type, refused!.streamId, refused!.payload.readUInt32BE(0)]).toEqual([
      FrameType.RST_STREAM,
      3,
      ErrorCode.REFUSED_STREAM,
    ]);
    expect(h.streams).toHaveLength(1);
    h.streams[0]!.sendHeaders();
    h.streams[0]!.write(Buffer.from('still'));
    expect(h.ended()).toBe(false);
    h.streams[0]!.end({ code: 0, message: '' });
    expect(h.conn.session.destroyed).toBe(true);
  });

  it('a peer’s RST_STREAM closes the stream with no end; its GOAWAY is noted only', () => {
    const h = harness();
    h.open();
    h.send(h.request(1));
    h.send(encodeRstStream(1, ErrorCode.CANCEL));
    expect(h.log).toEqual(['close 1']);
    expect(h.streams[0]!.closed).toBe(true);
    // Data in flight for the stream counts against the connection only.
    h.send(encodeFrame(FrameType.DATA, 0, 1, Buffer.from('late')));
    h.send(encodeGoaway(1, ErrorCode.NO_ERROR));
    expect(h.errors).toEqual([]);
    expect(h.conn.session.destroyed).toBe(false);
  });

  it('refuses streams over MAX_CONCURRENT_STREAMS, and resets one on a stream error', () => {
    const h = harness({ ...SETTINGS, maxConcurrentStreams: 1 });
    h.open();
    h.send(h.request(1), h.request(3));
    const out = h.frames();
    expect(out.map((f) => [f.type, f.streamId, f.payload.readUInt32BE(0)])).toEqual([
      [FrameType.RST_STREAM, 3, ErrorCode.REFUSED_STREAM],
    ]);
    expect(h.streams).toHaveLength(1);
    h.send(encodeWindowUpdate(1, 0));
    expect(h.frames().map((f) => [f.streamId, f.payload.readUInt32BE(0)])).toEqual([
      [1, ErrorCode.PROTOCOL_ERROR],
    ]);
    expect(h.conn.session.destroyed).toBe(false);
    const g = harness();
    g.open();
    g.send(g.request(1, false, [[':method', 'POST']]));
    expect(g.frames().map((f) => [f.type, f.streamId, f.payload.readUInt32BE(0)])).toEqual([
      [FrameType.RST_STREAM, 1, ErrorCode.PROTOCOL_ERROR],
    ]);
    expect(g.streams).toHaveLength(0);
  });

  it('ignores PRIORITY and unknown frame types', () => {
    const h = harness();
    h.open();
    h.send(
      encodeFrame(FrameType.PRIORITY, 0, 1, Buffer.alloc(5)),
      encodeFrame(0xfa, 0xff, 0, Buffer.from('whatever')),
      h.request(1),
    );
    expect(h.streams).toHaveLength(1);
    expect(h.errors).toEqual([]);
  });

  it.each([
    [
      'DATA on stream 0',
      () => encodeFrame(FrameType.DATA, 0, 0, Buffer.from('x')),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      'an even stream id',
      () => encodeFrame(FrameType.HEADERS, Flag.END_HEADERS, 2, encodeHeaderBlock(REQUEST)),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      'PUSH_PROMISE',
      () => encodeFrame(FrameType.PUSH_PROMISE, 0, 1, Buffer.alloc(4)),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      'a bad HPACK block',
      () =>
        encodeFrame(
          FrameType.HEADERS,
          Flag.END_HEADERS,
          1,
          Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ),
      ErrorCode.COMPRESSION_ERROR,
    ],
    [
      'a PING of 3 bytes',
      () => encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(3)),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
    [
      'a frame over our maximum',
      () => encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(16_385)),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
    [
      'a frame inside a header block',
      () =>
        Buffer.concat([
          encodeFrame(FrameType.HEADERS, 0, 1, encodeHeaderBlock(REQUEST)),
          encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8)),
        ]),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      'DATA on an idle stream',
      () => encodeFrame(FrameType.DATA, 0, 7, Buffer.from('x')),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      'SETTINGS MAX_FRAME_SIZE too small',
      () => encodeSettings([[Setting.MAX_FRAME_SIZE, 100]]),
      ErrorCode.PROTOCOL_ERROR,
    ],
  ])('%s ends the session with a GOAWAY, never a throw', (_name, frame, code) => {
    const h = harness();
    h.open();
    expect(() => h.send(frame())).not.toThrow();
    const last = h.frames().at(-1);
    expect(last?.type).toBe(FrameType.GOAWAY);
    expect(goawayCode(last)).toBe(code);
    expect(h.errors).toEqual([code]);
    expect(h.conn.session.destroyed).toBe(true);
    // Nothing more is read or written.
    h.send(h.request(9));
    expect(h.frames()).toEqual([]);
  });

  it('cuts a failed connection whose peer neither reads its GOAWAY nor closes', async () => {
    const h = harness();
    h.open();
    h.send(encodeFrame(FrameType.DATA, 0, 0, Buffer.from('x')));
    expect(h.ended()).toBe(true);
    expect(h.socket.destroyed).toBe(false);
    await h.clock.advance(FAIL_GRACE_MS);
    expect(h.socket.destroyed).toBe(true);
  });

  it('a handler that throws ends its connection with INTERNAL_ERROR, not the process', () => {
    const h = harness();
    h.setOnStream(() => {
      throw new Error('boom');
    });
    h.open();
    expect(() => h.send(h.request(1))).not.toThrow();
    expect(goawayCode(h.frames().at(-1))).toBe(ErrorCode.INTERNAL_ERROR);
  });

  it('survives random frames after the handshake (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            type: fc.integer({ min: 0, max: 12 }),
            flags: fc.integer({ min: 0, max: 255 }),
            streamId: fc.integer({ min: 0, max: 9 }),
            payload: fc.uint8Array({ maxLength: 64 }),
          }),
          { maxLength: 12 },
        ),
        fc.uint8Array({ maxLength: 64 }),
        (list, tail) => {
          const h = harness();
          h.open();
          h.send(h.request(1));
          for (const f of list) {
            h.send(encodeFrame(f.type, f.flags, f.streamId, Buffer.from(f.payload)));
          }
          h.send(Buffer.from(tail));
          for (const s of h.streams) {
            s.sendHeaders();
            s.write(Buffer.from('x'));
            s.end({ code: 0, message: '' });
          }
          // Whatever happened, the output is well-formed frames.
          expect(Array.isArray(h.frames())).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
