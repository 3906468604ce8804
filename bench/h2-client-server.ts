/**
 * The peer of `npm run bench -- h2-client`, as a child process: a bare `node:http2` server.
 * A stream whose request carries `x-bench-emit: 1` gets one gRPC frame of `--message-bytes`
 * written every 1 ms (one message per wake-up at the client); every other stream is read and
 * counted. Not a product.
 */
import { createServer } from 'node:http2';
import type { AddressInfo } from 'node:net';

function main(): void {
  const at = process.argv.indexOf('--message-bytes');
  const size = at >= 0 ? Number(process.argv[at + 1]) : 560;
  const frame = Buffer.alloc(5 + size, 7);
  frame[0] = 0;
  frame.writeUInt32BE(size, 1);
  let received = 0;
  const server = createServer({ settings: { initialWindowSize: 1 << 20 } });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    stream.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    if (headers['x-bench-emit'] === '1') {
      const timer = setInterval(() => stream.write(frame), 1);
      stream.on('close', () => clearInterval(timer));
    }
  });
  server.listen(0, '127.0.0.1', () => {
    process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port });
  });
  process.on('message', (m: { type: string }) => {
    if (m.type === 'stats') process.send?.({ type: 'stats', received, cpu: process.cpuUsage() });
    else if (m.type === 'exit') process.exit(0);
  });
}

main();
