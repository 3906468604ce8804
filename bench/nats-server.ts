/**
 * nats-server for the benchmarks that compare against it (`fanout-nats.ts`, `broker.ts
 * --server nats`) and a free loopback port for any bench server: the binary from `PATH`,
 * started on a free port of 127.0.0.1 with its defaults, ready once it logs so.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { sleep } from './e2e-child.js';

/** A free loopback TCP port (listen on 0, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface NatsServer {
  port: number;
  /** As the server logs it (`Version:`), or `unknown`. */
  version: string;
  /** Its process id, for its CPU time from `/proc`. */
  pid: number;
  stop(): Promise<void>;
}

/** Starts `nats-server` on a free port; rejects if it exits or is not ready within 10 s. */
export async function startNatsServer(): Promise<NatsServer> {
  const port = await freePort();
  const proc: ChildProcess = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  proc.stderr?.on('data', (d: Buffer) => {
    log += d.toString();
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const failed = new Promise<never>((_, reject) => {
    proc.once('error', (err) => reject(new Error(`cannot start nats-server: ${err.message}`)));
    proc.once('exit', (code) =>
      reject(new Error(`nats-server exited with ${code} before it was ready: ${log}`)),
    );
  });
  failed.catch(() => undefined);
  const deadline = Date.now() + 10_000;
  while (!/Server is ready/.test(log)) {
    if (Date.now() > deadline) throw new Error(`nats-server not ready after 10 s: ${log}`);
    await Promise.race([sleep(20), failed]);
  }
  return {
    port,
    version: /Version:\s+(\S+)/.exec(log)?.[1] ?? 'unknown',
    pid: proc.pid ?? 0,
    stop: async () => {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}
