import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { tcpReachable } from './services.js';

describe('tcpReachable', () => {
  it('sees a listening port and not a closed one', async () => {
    const server = createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    expect(await tcpReachable('127.0.0.1', port)).toBe(true);
    await new Promise<void>((r) => server.close(() => r()));
    expect(await tcpReachable('127.0.0.1', port, 500)).toBe(false);
  });
});
