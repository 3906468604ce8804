/**
 * Finding the loopback services that integration suites need (Postgres, Redis, NATS).
 *
 * Locally, a suite whose service is unreachable is skipped with a loud message. Under
 * `CI=true` an unreachable service fails the suite: CI must never pass a skipped suite off as
 * green. Use it at the top of a test file:
 *
 *   const pg = await requireService('postgres');
 *   describe.skipIf(!pg)('postgres consensus', () => { ... });
 */
import { connect } from 'node:net';

export type ServiceName = 'postgres' | 'redis' | 'nats';

/** Where each service is, overridable by environment variable. */
export const SERVICE_URLS: Record<ServiceName, string> = {
  postgres:
    process.env.PERSIST_PUBSUB_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  redis: process.env.PERSIST_PUBSUB_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  nats: process.env.PERSIST_PUBSUB_TEST_NATS_URL ?? 'nats://127.0.0.1:4222',
};

const cache = new Map<ServiceName, Promise<boolean>>();

/** True if a TCP connection to `host:port` opens within `timeoutMs`. */
export function tcpReachable(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function hostPort(name: ServiceName): { host: string; port: number } {
  const url = new URL(SERVICE_URLS[name]);
  const defaults: Record<ServiceName, number> = { postgres: 5432, redis: 6379, nats: 4222 };
  return { host: url.hostname || '127.0.0.1', port: Number(url.port) || defaults[name] };
}

/**
 * Resolves true if the service is reachable. If it is not: under `CI=true` it throws (the
 * suite fails); otherwise it prints a loud warning and resolves false (the suite skips).
 */
export function requireService(name: ServiceName): Promise<boolean> {
  let probe = cache.get(name);
  if (probe === undefined) {
    const { host, port } = hostPort(name);
    probe = tcpReachable(host, port);
    cache.set(name, probe);
  }
  return probe.then((ok) => {
    if (ok) return true;
    const where = SERVICE_URLS[name];
    if (process.env.CI === 'true') {
      throw new Error(`${name} at ${where} is unreachable and CI=true: its suites must run`);
    }
    console.warn(
      `\n!!!!!!!! SKIPPING ${name.toUpperCase()} SUITES: ${where} is unreachable. ` +
        `Start ${name} (see README) to run them; under CI=true this is a failure. !!!!!!!!\n`,
    );
    return false;
  });
}
