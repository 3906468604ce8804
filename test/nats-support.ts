/**
 * Test support for the NATS suites: a private nats-server on a free loopback port (for restart
 * scenarios, so the shared server on 4222 is never touched), unique subject prefixes, and small
 * event helpers. Only the child process started here is ever killed, by its own handle.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import type { PubSubClient, PubSubEvent } from '../src/client/index.js';
import { tcpReachable } from './support/services.js';
import { until as waitUntil } from './support/wait.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a !== null ? resolve(a.port) : reject(new Error())));
    });
  });
}

/** A subject prefix no other run or suite uses. */
export const uniquePrefix = (what: string): string =>
  `pptest.${what}.${randomBytes(6).toString('hex')}`;

/** `until` of `support/wait.ts` with NATS's longer default: the server's round trips under CI load. */
export const until = (pred: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> =>
  waitUntil(pred, timeoutMs, what);

/** Collects every event of a client into an array. */
export function collect(client: PubSubClient): PubSubEvent[] {
  const out: PubSubEvent[] = [];
  void (async () => {
    for await (const ev of client.events()) out.push(ev);
  })();
  return out;
}

export const seqnos = (evs: PubSubEvent[], shardId: string): bigint[] =>
  evs.flatMap((e) => (e.kind === 'diff' && e.shardId === shardId ? [e.seqno] : []));

/** A nats-server of our own on a fixed free port, restartable on the same port. */
export interface OwnNatsServer {
  readonly port: number;
  readonly url: string;
  /** Starts it (again) and waits until it accepts connections. */
  start(): Promise<void>;
  /** Kills it (SIGKILL: an abrupt loss, as a crash) and waits for the exit. */
  kill(): Promise<void>;
}

export async function ownNatsServer(): Promise<OwnNatsServer> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const kill = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    async start() {
      if (child !== undefined) return;
      const c = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], {
        stdio: 'ignore',
      });
      child = c;
      const deadline = Date.now() + 10_000;
      while (!(await tcpReachable('127.0.0.1', port, 200))) {
        if (c.exitCode !== null) throw new Error(`nats-server exited with ${c.exitCode}`);
        if (Date.now() > deadline) throw new Error('nats-server did not start in 10 s');
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    kill,
  };
}
