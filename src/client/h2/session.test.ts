/**
 * The HTTP/2 client session against a scripted peer over an in-memory duplex: the handshake,
 * header blocks (HPACK, CONTINUATION, trailers), flow control both ways, PING, GOAWAY,
 * RST_STREAM, and bad peers (clear H2Errors, never a throw: a property test feeds random
 * frames and bytes).
 */
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { frameCollector } from '../../protocol/h2/frame-collector.test-support.js';
import {
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
  Setting,
} from '../../protocol/h2/index.js';
import { connectH2, type H2Error, type H2Headers, type H2StreamEvents } from './session.js';

/** A client session on an in-memory socket; the test plays the server. */
function harness(windows = { stream: 1 << 20, connection: 4 << 20 }) {
  const fromClient: Buffer[] = [];
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      fromClient.push(chunk);
      cb();
    },
  });
  const log: string[] = [];
  let closeError: H2Error | undefined;
  const session = connectH2(
    {
      host: 'test',
      port: 0,
      streamWindowBytes: windows.stream,
      connectionWindowBytes: windows.connection,
      socket: socket as unknown as Socket,
    },
    {
      onConnect: () => log.push('connect'),
      onGoaway: (code, last) => log.push(`goaway ${code} ${last}`),
      onClose: (err) => {
        closeError = err;
        log.push(`close ${err?.h2Code ?? '-'}`);
      },
    },
  );
  /** Frames the client wrote since the last call (after the preface). */
  const frames = frameCollector(fromClient, { skipPreface: true });
  const send = (...bufs: Buffer[]): void => {
    // Synchronously, as a socket read would call its listener.
    for (const b of bufs) socket.emit('data', b);
  };
  const streamEvents = (): H2StreamEvents & { seen: string[]; data: Buffer[] } => {
    const seen: string[] = [];
    const data: Buffer[] = [];
    return {
      seen,
      data,
      onHeaders: (h: H2Headers, end: boolean) => seen.push(`headers ${JSON.stringify(h)} ${end}`),
      onData: (d: Buffer) => {
        data.push(d);
        seen.push(`data ${d.length}`);
      },
      onEnd: () => seen.push('end'),
      onReset: (code: number) => seen.push(`reset ${code}`),
    };
  };
  return {
    session,
    socket,
    log,
    frames,
    send,
    streamEvents,
    closeError: () => closeError,
  };
}

const settings = (pairs: [number, number][] = []): Buffer => encodeSettings(pairs);
const headersFrame = (id: number, fields: [string, string][], flags: number): Buffer =>
  encodeFrame(FrameType.HEADERS, flags | Flag.END_HEADERS, id, encodeHeaderBlock(fields));
const data = (id: number, bytes: Buffer, flags = 0): Buffer =>
  encodeFrame(FrameType.DATA, flags, id, bytes);

describe('H2 session: handshake', () => {
  it('sends the preface, its SETTINGS and the connection window; up at the peer SETTINGS', () => {
    const h = harness();
    const first = h.frames();
    expect(first.map((f) => f.type)).toEqual([FrameType.SETTINGS, FrameType.WINDOW_UPDATE]);
    const s = first[0]!.payload;
    const got = new Map<number, number>();
    for (let i = 0; i < s.length; i += 6) got.set(s.readUInt16BE(i), s.readUInt32BE(i + 2));
    expect(got.get(Setting.ENABLE_PUSH)).toBe(0);
    expect(got.get(Setting.INITIAL_WINDOW_SIZE)).toBe(1 << 20);
    expect(first[1]!.payload.readUInt32BE(0)).toBe((4 << 20) - 65_535);
    expect(h.log).toEqual([]);
    h.send(settings([[Setting.MAX_CONCURRENT_STREAMS, 100]]));
    expect(h.log).toEqual(['connect']);
    expect(h.frames()).toEqual([
      { type: FrameType.SETTINGS, flags: Flag.ACK, streamId: 0, payload: Buffer.alloc(0) },
    ]);
  });

  it('a peer that is not HTTP/2 ends the session with a clear error', () => {
    const h = harness();
    h.send(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'));
    expect(h.log).toEqual(['close 6']);
    expect(h.closeError()?.message).toMatch(/exceeds our maximum/);
    const h2 = harness();
    h2.send(encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8)));
    expect(h2.closeError()?.message).toMatch(/not SETTINGS/);
    // Our GOAWAY names the error.
    const goaway = h2.frames().find((f) => f.type === FrameType.GOAWAY)!;
    expect(goaway.payload.readUInt32BE(4)).toBe(ErrorCode.PROTOCOL_ERROR);
  });
});

describe('H2 session: a stream', () => {
  it('sends its headers, then gets response headers, data and trailers in order', () => {
    const h = harness();
    h.send(settings());
    h.frames();
    const ev = h.streamEvents();
    h.session.request(
      [
        [':method', 'POST'],
        [':path', '/x'],
        ['te', 'trailers'],
      ],
      ev,
    );
    const [hf] = h.frames();
    expect(hf!.type).toBe(FrameType.HEADERS);
    expect(hf!.streamId).toBe(1);
    expect(hf!.flags & Flag.END_HEADERS).toBe(Flag.END_HEADERS);
    expect(createHpackDecoder().decode(hf!.payload)).toEqual([
      [':method', 'POST'],
      [':path', '/x'],
      ['te', 'trailers'],
    ]);
    h.send(
      headersFrame(1, [[':status', '200']], 0),
      data(1, Buffer.from('abc')),
      // Padded DATA: 2 bytes of padding.
      encodeFrame(FrameType.DATA, Flag.PADDED, 1, Buffer.from([2, 0x64, 0, 0])),
      headersFrame(1, [['grpc-status', '0']], Flag.END_STREAM),
    );
    expect(ev.seen).toEqual([
      'headers {":status":"200"} false',
      'data 3',
      'data 1',
      'headers {"grpc-status":"0"} true',
      'end',
    ]);
  });

  it('joins a header block across CONTINUATION frames (Huffman, RFC 7541 C.6.1)', () => {
    const h = harness();
    h.send(settings());
    const ev = h.streamEvents();
    h.session.request([[':method', 'POST']], ev);
    const block = Buffer.from(
      '488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3',
      'hex',
    );
    h.send(
      encodeFrame(FrameType.HEADERS, 0, 1, block.subarray(0, 10)),
      encodeFrame(FrameType.CONTINUATION, 0, 1, block.subarray(10, 30)),
      encodeFrame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(30)),
    );
    expect(ev.seen).toEqual([
      'headers {":status":"302","cache-control":"private","date":"Mon, 21 Oct 2013 20:13:21 GMT","location":"https://www.example.com"} false',
    ]);
    // Anything else inside a header block is a protocol error.
    h.send(encodeFrame(FrameType.HEADERS, 0, 1, block.subarray(0, 10)), data(1, Buffer.from('x')));
    expect(h.closeError()?.message).toMatch(/inside a header block/);
  });

  it('RST_STREAM resets the stream; GOAWAY reports and refuses streams above its last id', () => {
    const h = harness();
    h.send(settings());
    const a = h.streamEvents();
    const b = h.streamEvents();
    const c = h.streamEvents();
    h.session.request([[':method', 'POST']], a);
    h.session.request([[':method', 'POST']], b);
    h.session.request([[':method', 'POST']], c);
    h.send(encodeRstStream(1, ErrorCode.CANCEL));
    expect(a.seen).toEqual(['reset 8']);
    h.send(encodeGoaway(3, ErrorCode.NO_ERROR));
    expect(h.log).toEqual(['connect', 'goaway 0 3']);
    expect(b.seen).toEqual([]);
    expect(c.seen).toEqual(['reset 7']);
    expect(() => h.session.request([[':method', 'POST']], h.streamEvents())).toThrow(/GOAWAY/);
    // Stream 3 still works until the peer ends it.
    h.send(headersFrame(3, [[':status', '200']], 0));
    expect(b.seen).toHaveLength(1);
  });

  it('acks the peer PING, and runs our ping callback at its ACK', () => {
    const h = harness();
    h.send(settings());
    h.frames();
    const payload = Buffer.from('01234567');
    h.send(encodeFrame(FrameType.PING, 0, 0, payload));
    expect(h.frames()).toEqual([{ type: FrameType.PING, flags: Flag.ACK, streamId: 0, payload }]);
    let pongs = 0;
    h.session.ping(() => pongs++);
    const [ping] = h.frames();
    expect(ping!.type).toBe(FrameType.PING);
    h.send(encodeFrame(FrameType.PING, Flag.ACK, 0, Buffer.from('xxxxxxxx')));
    expect(pongs).toBe(0);
    h.send(encodeFrame(FrameType.PING, Flag.ACK, 0, ping!.payload));
    expect(pongs).toBe(1);
  });
});

describe('H2 session: flow control', () => {
  it('holds writes past the peer window (counted as buffered) and sends them as it opens', () => {
    const h = harness();
    h.send(settings([[Setting.INITIAL_WINDOW_SIZE, 10]]));
    const ev = h.streamEvents();
    const s = h.session.request([[':method', 'POST']], ev);
    h.frames();
    s.write(Buffer.alloc(25, 1));
    const sent = h.frames().filter((f) => f.type === FrameType.DATA);
    expect(sent.map((f) => f.payload.length)).toEqual([10]);
    expect(s.bufferedBytes).toBe(15);
    h.send(encodeWindowUpdate(1, 5));
    expect(h.frames().map((f) => f.payload.length)).toEqual([5]);
    // A SETTINGS change moves every open stream's window by the difference.
    h.send(settings([[Setting.INITIAL_WINDOW_SIZE, 20]]));
    const after = h.frames().filter((f) => f.type === FrameType.DATA);
    expect(after.map((f) => f.payload.length)).toEqual([10]);
    expect(s.bufferedBytes).toBe(0);
  });

  it('honours the connection window and the peer MAX_FRAME_SIZE', () => {
    const h = harness();
    h.send(
      settings([
        [Setting.INITIAL_WINDOW_SIZE, 1 << 20],
        [Setting.MAX_FRAME_SIZE, 16_384],
      ]),
    );
    const s = h.session.request([[':method', 'POST']], h.streamEvents());
    h.frames();
    s.write(Buffer.alloc(100_000, 2));
    // The connection window is still the initial 65,535.
    const sent = h.frames().filter((f) => f.type === FrameType.DATA);
    expect(sent.every((f) => f.payload.length <= 16_384)).toBe(true);
    expect(sent.reduce((n, f) => n + f.payload.length, 0)).toBe(65_535);
    h.send(encodeWindowUpdate(0, 1 << 20));
    const rest = h.frames().filter((f) => f.type === FrameType.DATA);
    expect(rest.reduce((n, f) => n + f.payload.length, 0)).toBe(100_000 - 65_535);
  });

  it('sends WINDOW_UPDATEs as it consumes; DATA past our window is a FLOW_CONTROL_ERROR', () => {
    const h = harness({ stream: 100, connection: 65_535 });
    h.send(settings());
    const ev = h.streamEvents();
    h.session.request([[':method', 'POST']], ev);
    h.send(headersFrame(1, [[':status', '200']], 0));
    h.frames();
    h.send(data(1, Buffer.alloc(60)));
    const updates = h.frames().filter((f) => f.type === FrameType.WINDOW_UPDATE);
    expect(updates.map((f) => [f.streamId, f.payload.readUInt32BE(0)])).toEqual([[1, 60]]);
    h.send(data(1, Buffer.alloc(101)));
    expect(h.closeError()?.h2Code).toBe(ErrorCode.FLOW_CONTROL_ERROR);
  });
});

describe('H2 session: bad peers', () => {
  const cases: [string, Buffer, number, RegExp][] = [
    ['DATA on stream 0', data(0, Buffer.alloc(1)), ErrorCode.PROTOCOL_ERROR, /stream 0/],
    ['DATA on an idle stream', data(9, Buffer.alloc(1)), ErrorCode.PROTOCOL_ERROR, /idle/],
    ['PUSH_PROMISE', encodeFrame(FrameType.PUSH_PROMISE, 0, 1, Buffer.alloc(4)), 1, /PUSH/],
    ['a short PING', encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(3)), 6, /PING of 3/],
    ['WINDOW_UPDATE of 0', encodeWindowUpdate(0, 0), ErrorCode.PROTOCOL_ERROR, /of 0/],
    [
      'a window past 2^31-1',
      encodeWindowUpdate(0, 0x7fffffff),
      ErrorCode.FLOW_CONTROL_ERROR,
      /2\^31-1/,
    ],
    ['a bad MAX_FRAME_SIZE', settings([[Setting.MAX_FRAME_SIZE, 100]]), 1, /MAX_FRAME_SIZE/],
    [
      'a bad header block',
      encodeFrame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0x80])),
      ErrorCode.COMPRESSION_ERROR,
      /bad header block/,
    ],
    ['a GOAWAY on a stream', encodeFrame(FrameType.GOAWAY, 0, 1, Buffer.alloc(8)), 1, /stream/],
    ['a frame over 16 KiB', data(1, Buffer.alloc(20_000)), ErrorCode.FRAME_SIZE_ERROR, /exceeds/],
  ];
  for (const [name, frame, code, message] of cases) {
    it(`${name}: GOAWAY ${code} and a clear error`, () => {
      const h = harness();
      h.send(settings());
      const ev = h.streamEvents();
      h.session.request([[':method', 'POST']], ev);
      h.send(frame);
      expect(h.closeError()?.h2Code).toBe(code);
      expect(h.closeError()?.message).toMatch(message);
      expect(h.log.filter((l) => l.startsWith('close'))).toHaveLength(1);
    });
  }

  it('random frames and bytes never throw: the session stays up or ends with an H2Error', () => {
    const frameArb = fc.record({
      type: fc.integer({ min: 0, max: 12 }),
      flags: fc.integer({ min: 0, max: 255 }),
      streamId: fc.oneof(fc.constantFrom(0, 1, 3), fc.integer({ min: 0, max: 0x7fffffff })),
      payload: fc.uint8Array({ maxLength: 64 }),
    });
    const input = fc.array(
      fc.oneof(
        frameArb.map((f) => encodeFrame(f.type, f.flags, f.streamId, f.payload)),
        fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
      ),
      { maxLength: 20 },
    );
    let failed = 0;
    fc.assert(
      fc.property(input, fc.boolean(), (chunks, handshake) => {
        const h = harness();
        const ev = h.streamEvents();
        if (handshake) {
          h.send(settings());
          h.session.request([[':method', 'POST']], ev);
          const s = h.session.request([[':method', 'POST']], h.streamEvents());
          s.write(Buffer.alloc(100_000));
        }
        for (const c of chunks) h.send(c);
        const closes = h.log.filter((l) => l.startsWith('close'));
        expect(closes.length).toBeLessThanOrEqual(1);
        if (closes.length === 1) {
          failed++;
          expect(h.closeError()?.message.length).toBeGreaterThan(0);
        }
        h.session.destroy();
      }),
      { numRuns: 2000 },
    );
    // The input did reach the session: most random runs end it.
    expect(failed).toBeGreaterThan(500);
  });
});

describe('HTTP/2 client session over TCP', () => {
  it('reads into slabs: every DATA chunk kept intact across many reads and slabs', async () => {
    // A server that answers the preface, then sends 2 MiB of numbered DATA frames in writes
    // of varied sizes, so reads land across slab boundaries; the client keeps every chunk.
    const total = 2 << 20;
    const payload = Buffer.alloc(total);
    for (let i = 0; i < total; i += 4) payload.writeUInt32BE(i >>> 2, i);
    const server = createServer((sock) => {
      sock.once('data', () => {
        sock.write(encodeSettings([]));
        sock.write(
          encodeFrame(
            FrameType.HEADERS,
            Flag.END_HEADERS,
            1,
            encodeHeaderBlock([[':status', '200']]),
          ),
        );
        let at = 0;
        let n = 0;
        const next = (): void => {
          if (at >= total) return void sock.write(encodeFrame(FrameType.DATA, Flag.END_STREAM, 1));
          const frames: Buffer[] = [];
          const count = 1 + (n++ % 7);
          for (let k = 0; k < count && at < total; k++) {
            const size = Math.min(total - at, 1000 + ((n * 7919 + k * 104729) % 15000));
            frames.push(encodeFrame(FrameType.DATA, 0, 1, payload.subarray(at, at + size)));
            at += size;
          }
          sock.write(Buffer.concat(frames), () => setImmediate(next));
        };
        next();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const chunks: Buffer[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        const session = connectH2(
          {
            host: '127.0.0.1',
            port,
            streamWindowBytes: 1 << 30,
            connectionWindowBytes: 1 << 30,
          },
          {
            onConnect: () => {},
            onGoaway: () => {},
            onClose: (err) => reject(err ?? new Error('closed')),
          },
        );
        session.request([[':method', 'POST']], {
          onHeaders: () => {},
          onData: (d) => chunks.push(d),
          onEnd: () => {
            session.destroy();
            resolve();
          },
          onReset: (code) => reject(new Error(`reset ${code}`)),
        });
      });
    } finally {
      server.close();
    }
    expect(chunks.length).toBeGreaterThan(100);
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
  });
});
