import { createServer as createH2Server, connect as h2connect } from 'node:http2';
import { type AddressInfo, createServer as createNetServer, connect as netConnect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { frameCollector } from '../protocol/h2/frame-collector.test-support.js';
import { FrameType } from '../protocol/h2/index.js';
import { afterH2Receive } from './node-h2-client.test-support.js';

/**
 * One round of what pubsub-stream.test.ts did: two calls on a `node:http2` session, the first
 * half-closed and answered with trailers, the session destroyed after awaiting them. Returns
 * the frames the client sent, read off a relay between client and server.
 */
async function round(beforeDestroy: () => Promise<void>) {
  const server = createH2Server();
  server.on('stream', (s) => {
    s.on('error', () => {});
    s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    s.once('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
    s.resume();
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sent: Buffer[] = [];
  let relayed!: () => void;
  const clientGone = new Promise<void>((r) => {
    relayed = r;
  });
  const relay = createNetServer((down) => {
    const up = netConnect((server.address() as AddressInfo).port, '127.0.0.1');
    down.on('data', (b: Buffer) => {
      sent.push(b);
      up.write(b);
    });
    up.on('data', (b: Buffer) => down.write(b));
    down.on('close', () => {
      up.destroy();
      relayed();
    });
    down.on('error', () => {});
    up.on('error', () => {});
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  const session = h2connect(`http://127.0.0.1:${(relay.address() as AddressInfo).port}`);
  session.on('error', () => {});
  const request = () => {
    const s = session.request({ ':method': 'POST', ':path': '/x' });
    s.on('error', () => {});
    s.resume();
    return s;
  };
  const first = request();
  request().write('open');
  first.end('last');
  await new Promise((r) => first.once('trailers', r));
  await beforeDestroy();
  session.destroy();
  await clientGone;
  server.close();
  relay.close();
  return { firstId: first.id, frames: frameCollector(sent, { skipPreface: true })() };
}

describe('afterH2Receive', () => {
  it('keeps a session destroyed after awaited trailers from resetting the stream nghttp2 is still closing', async () => {
    // Destroyed in the trailers' continuation (no await before), the client resets the first
    // stream while nghttp2 still handles its END_STREAM, and sends that RST_STREAM (the stream
    // is freed under nghttp2 then); after afterH2Receive the stream has closed and is not reset.
    // Rounds, not time: without the wait most rounds send it.
    const resets: number[] = [];
    for (let i = 0; i < 20; i++) {
      const { firstId, frames } = await round(afterH2Receive);
      expect(frames.some((f) => f.type === FrameType.HEADERS && f.streamId === firstId)).toBe(true);
      resets.push(
        frames.filter((f) => f.type === FrameType.RST_STREAM && f.streamId === firstId).length,
      );
    }
    expect(resets).toEqual(Array.from({ length: 20 }, () => 0));
  });
});
