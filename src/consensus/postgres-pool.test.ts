import { EventEmitter } from 'node:events';
import { createServer, type Socket } from 'node:net';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createFakeClock, type FakeClock } from '../util/index.js';
import { executeNamed } from './postgres-execute.js';
import { POOL_SWEEP_MS, PostgresPool, type PostgresPoolOptions } from './postgres-pool.js';

/** A connection that records what the pool did with it. */
class FakeConn extends EventEmitter {
  static next = 0;
  readonly id = FakeConn.next++;
  held = true;
  ended = false;
  destroyed: Error | undefined;
  end(): Promise<void> {
    this.ended = true;
    return Promise.resolve();
  }
}

interface Harness {
  pool: PostgresPool<FakeConn>;
  clock: FakeClock;
  opened: FakeConn[];
  errors: { err: Error; idle: boolean }[];
  /** Makes the next connects fail with this error. */
  failConnects(err: Error | undefined): void;
  /** Makes connects wait until `finishConnects`. */
  holdConnects(): void;
  finishConnects(): void;
}

function harness(over: Partial<PostgresPoolOptions<FakeConn>> = {}): Harness {
  const clock = createFakeClock();
  const opened: FakeConn[] = [];
  const errors: { err: Error; idle: boolean }[] = [];
  let failure: Error | undefined;
  let held: (() => void)[] | undefined;
  const pool = new PostgresPool<FakeConn>({
    size: 2,
    connectTimeoutMs: 1_000,
    readTimeoutMs: 5_000,
    idleTimeoutMs: 0,
    connect: async () => {
      if (held !== undefined) await new Promise<void>((r) => held?.push(r));
      if (failure !== undefined) throw failure;
      const c = new FakeConn();
      opened.push(c);
      return c;
    },
    hold: (c, h) => {
      c.held = h;
    },
    destroy: (c, err) => {
      c.destroyed = err;
    },
    onError: (err, idle) => errors.push({ err, idle }),
    clock,
    ...over,
  });
  return {
    pool,
    clock,
    opened,
    errors,
    failConnects: (err) => {
      failure = err;
    },
    holdConnects: () => {
      held = [];
    },
    finishConnects: () => {
      const h = held ?? [];
      held = undefined;
      for (const r of h) r();
    },
  };
}

describe('PostgresPool', () => {
  it('opens a connection on demand, then hands the idle one out at once, last used first', async () => {
    const { pool, opened } = harness();
    const first = pool.acquire();
    expect(first).toBeInstanceOf(Promise);
    const a = await first;
    const b = await pool.acquire();
    expect(opened).toEqual([a, b]);
    expect([a.held, b.held]).toEqual([true, true]);
    pool.release(a);
    pool.release(b);
    // Idle sockets do not keep the process alive.
    expect([a.held, b.held]).toEqual([false, false]);
    expect(pool.idle).toBe(2);
    // Synchronous, no new connection: b was released last.
    expect(pool.acquire()).toBe(b);
    expect(b.held).toBe(true);
    expect(opened).toHaveLength(2);
  });

  it('never closes an idle connection with idleTimeoutMs 0, and does after idleTimeoutMs', async () => {
    const keep = harness();
    const a = await keep.pool.acquire();
    keep.pool.release(a);
    await keep.clock.advance(3_600_000);
    expect(a.ended).toBe(false);
    expect(keep.pool.acquire()).toBe(a);

    const expire = harness({ idleTimeoutMs: 10_000 });
    const b = await expire.pool.acquire();
    expire.pool.release(b);
    await expire.clock.advance(9_999);
    expect(b.ended).toBe(false);
    // Checked out and back again: the idle time starts over.
    expire.pool.release(expire.pool.acquire() as FakeConn);
    await expire.clock.advance(9_999);
    expect(b.ended).toBe(false);
    await expire.clock.advance(1);
    expect(b.ended).toBe(true);
    expect(expire.pool.size).toBe(0);
    expect(expire.pool.acquire()).toBeInstanceOf(Promise);
  });

  it('queues callers beyond its size, first come first served, and times them out', async () => {
    const { pool, clock } = harness({ size: 1 });
    const a = await pool.acquire();
    const order: string[] = [];
    const w1 = (pool.acquire() as Promise<FakeConn>).then((c) => {
      order.push('w1');
      return c;
    });
    const w2 = (pool.acquire() as Promise<FakeConn>).then((c) => {
      order.push('w2');
      return c;
    });
    const w3 = (pool.acquire() as Promise<FakeConn>).catch((err: Error) => err.message);
    pool.release(a);
    expect(await w1).toBe(a);
    await clock.advance(500);
    pool.release(a);
    expect(await w2).toBe(a);
    await clock.advance(500);
    expect(await w3).toBe('no Postgres connection within 1000 ms');
    expect(order).toEqual(['w1', 'w2']);
    expect(pool.size).toBe(1);
  });

  it('closes a connection released with an error, and opens another for a waiter', async () => {
    const { pool, opened } = harness({ size: 1 });
    const a = await pool.acquire();
    const waiting = pool.acquire() as Promise<FakeConn>;
    pool.release(a, new Error('connection lost'));
    expect(a.ended).toBe(true);
    const b = await waiting;
    expect(b).not.toBe(a);
    expect(opened).toEqual([a, b]);
    // A second release of the closed one changes nothing.
    pool.release(a);
    expect(pool.size).toBe(1);
  });

  it('drops a connection that fails while idle, and closes one that failed while checked out', async () => {
    const { pool, errors } = harness();
    const a = await pool.acquire();
    const b = await pool.acquire();
    pool.release(a);
    a.emit('error', new Error('idle socket reset'));
    expect(a.ended).toBe(true);
    expect(pool.idle).toBe(0);
    b.emit('error', new Error('busy socket reset'));
    expect(b.ended).toBe(false);
    // Released without an error (its statement already settled): closed all the same.
    pool.release(b);
    expect(b.ended).toBe(true);
    expect(errors.map((e) => [e.err.message, e.idle])).toEqual([
      ['idle socket reset', true],
      ['busy socket reset', false],
    ]);
    expect(pool.size).toBe(0);
  });

  it('fails the caller whose connection cannot be opened with the connect error', async () => {
    const h = harness();
    h.failConnects(new Error('ECONNREFUSED'));
    await expect(h.pool.acquire()).rejects.toThrow('ECONNREFUSED');
    expect(h.pool.size).toBe(0);
    h.failConnects(undefined);
    expect(h.opened).toHaveLength(0);
    await h.pool.acquire();
    expect(h.opened).toHaveLength(1);
  });

  it('destroys a connection checked out past the read timeout, restarted by stamp', async () => {
    const { pool, clock } = harness();
    const slow = await pool.acquire();
    const stamped = await pool.acquire();
    await clock.advance(4_000);
    pool.stamp(stamped);
    await clock.advance(1_000 + POOL_SWEEP_MS);
    expect(slow.destroyed?.message).toMatch(/^Postgres read timeout: no answer in \d+ ms/);
    expect(stamped.destroyed).toBeUndefined();
    await clock.advance(4_000);
    expect(stamped.destroyed).toBeDefined();
    // Released after its failure: closed, not reused.
    pool.release(slow);
    expect(slow.ended).toBe(true);
    // An idle connection is never timed out.
    pool.release(stamped, new Error('read timeout'));
    const fresh = await pool.acquire();
    pool.release(fresh);
    await clock.advance(60_000);
    expect(fresh.destroyed).toBeUndefined();
  });

  it('ends: fails waiters and later calls, closes idle and then released connections', async () => {
    const h = harness({ size: 2 });
    const a = await h.pool.acquire();
    const b = await h.pool.acquire();
    // Both busy: a waiter gets a when released; then a is idle, b busy.
    const waiter = h.pool.acquire() as Promise<FakeConn>;
    h.pool.release(a);
    expect(await waiter).toBe(a);
    h.pool.release(a);
    let ended = false;
    const end = h.pool.end().then(() => {
      ended = true;
    });
    expect(a.ended).toBe(true);
    // The closing idle socket keeps the process alive for end()'s caller.
    expect(a.held).toBe(true);
    expect(() => h.pool.acquire()).toThrow('the Postgres pool is closed');
    await Promise.resolve();
    expect(ended).toBe(false);
    h.pool.release(b);
    expect(b.ended).toBe(true);
    await end;
    expect(ended).toBe(true);
  });

  it('ends with a waiter and a connection being opened', async () => {
    const h = harness();
    h.holdConnects();
    const waiting = (h.pool.acquire() as Promise<FakeConn>).catch((err: Error) => err.message);
    const end = h.pool.end();
    expect(await waiting).toBe('the Postgres pool is closed');
    h.finishConnects();
    await end;
    expect(h.opened).toHaveLength(1);
    expect(h.opened[0]?.ended).toBe(true);
    expect(h.pool.size).toBe(0);
  });
});

/** A server that completes pg's startup (trust), then never answers again: a black hole. */
async function blackHole(): Promise<{
  url: string;
  received: () => number;
  close(): Promise<void>;
}> {
  const sockets = new Set<Socket>();
  let bytes = 0;
  const server = createServer((sock) => {
    sockets.add(sock);
    let started = false;
    sock.on('data', (chunk) => {
      bytes += chunk.length;
      if (started) return;
      started = true;
      // AuthenticationOk, ReadyForQuery (idle).
      sock.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0, 0x5a, 0, 0, 0, 5, 0x49]));
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    url: `postgres://postgres@127.0.0.1:${address.port}/test`,
    received: () => bytes,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('PostgresPool with pg clients', () => {
  it('cuts off a statement on a connection that answers nothing, with no SQLSTATE', async () => {
    const server = await blackHole();
    const clock = createFakeClock();
    const pool = new PostgresPool<pg.Client>({
      size: 1,
      connectTimeoutMs: 5_000,
      readTimeoutMs: 5_000,
      idleTimeoutMs: 0,
      connect: async () => {
        const c = new pg.Client({ connectionString: server.url });
        await c.connect();
        return c;
      },
      hold: () => undefined,
      destroy: (c, err) => c.connection.stream.destroy(err),
      onError: () => undefined,
      clock,
    });
    try {
      const client = await pool.acquire();
      const sent = server.received();
      const cas = executeNamed(client, 'cas', 'SELECT 1', ['k']).then(
        () => undefined,
        (err: unknown) => err,
      );
      // Wait until the statement is on the wire, then let the read timeout pass.
      while (server.received() === sent) await new Promise((r) => setImmediate(r));
      await clock.advance(4_000);
      await clock.advance(1_000 + POOL_SWEEP_MS);
      const err = await cas;
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(pg.DatabaseError);
      expect((err as Error).message).toMatch(/^Postgres read timeout: no answer in \d+ ms/);
      pool.release(client, err as Error);
      expect(pool.size).toBe(0);
    } finally {
      await pool.end();
      await server.close();
    }
  });
});
