/**
 * Connection-level faults: a TCP proxy on loopback in front of a server (the broker), with
 * - `cut()`: destroy every open connection (both ends see a reset/close);
 * - `stall(ms)`: stop forwarding in both directions for `ms`, then deliver what was held;
 * - `slow(ms)`: delay every chunk by `ms` from now on (order kept; 0 heals);
 * - `halfOpen()`: close the upstream side of every connection while the client's socket stays
 *   open and silent (what a dead peer behind a NAT looks like: only keepalive can find it);
 * - `refuse(on)`: accept and at once destroy new connections while on.
 * The target may change (`retarget`) for a restarted server on a new port.
 */
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';

export interface FaultProxy {
  readonly port: number;
  readonly url: string;
  readonly counts: Readonly<{ cut: number; stall: number; slow: number; halfOpen: number }>;
  cut(): void;
  stall(ms: number): void;
  slow(ms: number): void;
  halfOpen(): void;
  refuse(on: boolean): void;
  retarget(port: number): void;
  /** Open client-side connections. */
  connections(): number;
  /** Clears slow/stall/refuse (held data is delivered). */
  heal(): void;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  /** Chunks waiting for a stall to end or a slow delay, per direction. */
  queue: { to: Socket; data: Buffer; at: number }[];
  timer: NodeJS.Timeout | undefined;
  dead: boolean;
}

export async function createFaultProxy(
  targetPort: number,
  host = '127.0.0.1',
): Promise<FaultProxy> {
  let target = targetPort;
  const pairs = new Set<Pair>();
  const counts = { cut: 0, stall: 0, slow: 0, halfOpen: 0 };
  let stalledUntil = 0;
  let slowMs = 0;
  let refusing = false;
  const halfOpenSockets = new Set<Socket>();

  const pump = (p: Pair): void => {
    if (p.timer !== undefined) return;
    const now = Date.now();
    while (p.queue.length > 0) {
      const head = p.queue[0] as Pair['queue'][number];
      const due = Math.max(head.at, stalledUntil);
      if (due > now) {
        p.timer = setTimeout(() => {
          p.timer = undefined;
          pump(p);
        }, due - now);
        p.timer.unref();
        return;
      }
      p.queue.shift();
      if (!head.to.destroyed && head.to.writable) head.to.write(head.data);
    }
  };

  const kill = (p: Pair): void => {
    if (p.dead) return;
    p.dead = true;
    if (p.timer !== undefined) clearTimeout(p.timer);
    p.client.destroy();
    p.upstream.destroy();
    pairs.delete(p);
  };

  const server: Server = createServer((client) => {
    client.setNoDelay(true);
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = connect({ host, port: target });
    upstream.setNoDelay(true);
    const p: Pair = { client, upstream, queue: [], timer: undefined, dead: false };
    pairs.add(p);
    const forward = (to: Socket) => (data: Buffer) => {
      if (p.dead) return;
      p.queue.push({ to, data, at: Date.now() + slowMs });
      pump(p);
    };
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
    client.on('error', () => kill(p));
    upstream.on('error', () => kill(p));
    client.on('close', () => kill(p));
    upstream.on('close', () => {
      // In half-open mode the client side is left open on purpose.
      if (!(p as { halfOpen?: boolean }).halfOpen) kill(p);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    url: `grpc://${host}:${port}`,
    counts,
    cut() {
      counts.cut++;
      for (const p of [...pairs]) kill(p);
    },
    stall(ms) {
      counts.stall++;
      stalledUntil = Math.max(stalledUntil, Date.now() + ms);
    },
    slow(ms) {
      if (ms > 0) counts.slow++;
      slowMs = ms;
    },
    halfOpen() {
      counts.halfOpen++;
      for (const p of [...pairs]) {
        (p as { halfOpen?: boolean }).halfOpen = true;
        p.dead = true; // stop forwarding; the client's socket stays open and silent
        if (p.timer !== undefined) clearTimeout(p.timer);
        p.upstream.destroy();
        pairs.delete(p);
        halfOpenSockets.add(p.client);
        p.client.on('close', () => halfOpenSockets.delete(p.client));
      }
    },
    refuse(on) {
      refusing = on;
    },
    retarget(next) {
      target = next;
    },
    connections: () => pairs.size,
    heal() {
      stalledUntil = 0;
      slowMs = 0;
      refusing = false;
      for (const p of pairs) {
        if (p.timer !== undefined) clearTimeout(p.timer);
        p.timer = undefined;
        for (const q of p.queue) q.at = 0;
        pump(p);
      }
    },
    async close() {
      for (const p of [...pairs]) kill(p);
      for (const s of halfOpenSockets) s.destroy();
      halfOpenSockets.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
