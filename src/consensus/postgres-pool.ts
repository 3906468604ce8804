/**
 * The Postgres backend's connection pool: at most `size` connections, opened on demand and kept
 * open (unless `idleTimeoutMs`), handed out last-in first-out (the connection used last is the
 * warm one) and, when one is idle, synchronously: no timer, promise or tick per checkout.
 *
 * It replaces pg-pool, whose checkout of an idle connection arms and clears a timeout, defers
 * to `process.nextTick` and resolves a promise, whose release arms an idle timer, and whose
 * default idle timeout (10 s) closed the idle connections of a writer's pool between bursts,
 * so that the next burst paid new connections (startup, authentication, the statements' Parse)
 * in its tail: bench/results/notes.md "The Postgres writer's pool".
 *
 * A connection that fails while idle is dropped; one released with an error (its statement's
 * connection failed or timed out, see `postgres.ts`) is closed, and a waiter then gets a new
 * one. A waiter that gets no connection within `connectTimeoutMs` fails; so does one whose new
 * connection cannot be opened (with that error).
 *
 * The client-side read timeout is one sweep for the pool instead of a timer per statement:
 * every `SWEEP_MS` (while connections are open) a connection checked out for longer than
 * `readTimeoutMs` since its last `stamp` is destroyed, which fails its statement with no
 * SQLSTATE (an outcome unknown for a write). A black-holed connection is so cut off after
 * `readTimeoutMs` to `readTimeoutMs + SWEEP_MS`.
 */
import type { Clock, Timer } from '../util/index.js';

/** How often the read-timeout sweep looks at the checked-out connections. */
export const POOL_SWEEP_MS = 1_000;

/** What the pool needs of a connection (a `pg.Client`). */
export interface PoolConnection {
  end(): Promise<void>;
  on(event: 'error', listener: (err: Error) => void): unknown;
}

export interface PostgresPoolOptions<C extends PoolConnection> {
  /** Connections at most, in [1, 1000]. */
  size: number;
  /** How long `acquire` waits for a connection when none is idle. */
  connectTimeoutMs: number;
  /** A connection checked out for longer than this since its last `stamp` is destroyed. */
  readTimeoutMs: number;
  /** An idle connection is closed after this long; 0 keeps it open. */
  idleTimeoutMs: number;
  /** Opens a connection. */
  connect(): Promise<C>;
  /**
   * Whether `conn`'s socket keeps the process alive: held while checked out (a caller awaits
   * its statement), not while idle.
   */
  hold(conn: C, held: boolean): void;
  /** Breaks `conn` at once: its statement in flight fails with `err`. */
  destroy(conn: C, err: Error): void;
  /** A connection failed: `idle` if it was in the pool (and is now dropped). */
  onError(err: Error, idle: boolean): void;
  clock: Clock;
}

interface Slot {
  /** Idle: in `#idle`; busy: checked out; gone: closed or being closed. */
  state: 'idle' | 'busy' | 'gone';
  /** The last checkout or `stamp` (monotonic ms), while busy. */
  since: number;
  /** The connection failed while checked out: close it on release. */
  broken: boolean;
  idleTimer: Timer | undefined;
}

interface Waiter<C> {
  resolve(conn: C): void;
  reject(err: Error): void;
  timer: Timer;
}

export class PostgresPool<C extends PoolConnection> {
  readonly #o: PostgresPoolOptions<C>;
  readonly #slots = new Map<C, Slot>();
  /** Idle connections; the last is handed out first. */
  readonly #idle: C[] = [];
  readonly #waiters: Waiter<C>[] = [];
  /** Connections being opened. */
  #opening = 0;
  /** Connections being closed (no longer counted against `size`). */
  #closing = 0;
  #sweep: Timer | undefined;
  #ended = false;
  #drained: (() => void) | undefined;

  constructor(options: PostgresPoolOptions<C>) {
    this.#o = options;
  }

  /** Open connections, opening ones included. */
  get size(): number {
    return this.#slots.size + this.#opening;
  }

  /** Idle connections. */
  get idle(): number {
    return this.#idle.length;
  }

  /**
   * A connection: at once if one is idle, else a promise (a new connection if there is room,
   * or the next one released). Throws (or rejects) once the pool is ended.
   */
  acquire(): C | Promise<C> {
    if (this.#ended) throw new Error('the Postgres pool is closed');
    const conn = this.#idle.pop();
    if (conn !== undefined) {
      this.#checkOut(conn);
      return conn;
    }
    return new Promise<C>((resolve, reject) => {
      const waiter: Waiter<C> = {
        resolve,
        reject,
        timer: this.#o.clock.setTimer(() => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(new Error(`no Postgres connection within ${this.#o.connectTimeoutMs} ms`));
        }, this.#o.connectTimeoutMs),
      };
      this.#waiters.push(waiter);
      this.#grow();
    });
  }

  /** Restarts the read timeout of a checked-out connection (before each further statement). */
  stamp(conn: C): void {
    const slot = this.#slots.get(conn);
    if (slot !== undefined && slot.state === 'busy') slot.since = this.#o.clock.monotonicMs();
  }

  /**
   * Gives `conn` back; with `err` (or if it failed while checked out, or the pool is ended) it
   * is closed instead.
   */
  release(conn: C, err?: Error): void {
    const slot = this.#slots.get(conn);
    if (slot === undefined || slot.state !== 'busy') return;
    if (err !== undefined || slot.broken || this.#ended) {
      this.#close(conn, slot);
      this.#grow();
      return;
    }
    this.#handOut(conn, slot);
  }

  /** Fails the waiters, closes the idle connections, and the busy ones when released. */
  end(): Promise<void> {
    if (!this.#ended) {
      this.#ended = true;
      this.#sweep?.cancel();
      this.#sweep = undefined;
      for (const w of this.#waiters.splice(0)) {
        w.timer.cancel();
        w.reject(new Error('the Postgres pool is closed'));
      }
      for (const conn of this.#idle.splice(0)) {
        const slot = this.#slots.get(conn);
        if (slot !== undefined) this.#close(conn, slot);
      }
    }
    if (this.size + this.#closing === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const prev = this.#drained;
      this.#drained = () => {
        prev?.();
        resolve();
      };
    });
  }

  #checkOut(conn: C): void {
    const slot = this.#slots.get(conn);
    if (slot === undefined) return;
    slot.state = 'busy';
    slot.since = this.#o.clock.monotonicMs();
    if (slot.idleTimer !== undefined) {
      slot.idleTimer.cancel();
      slot.idleTimer = undefined;
    }
    this.#o.hold(conn, true);
  }

  /** To the oldest waiter, or idle. */
  #handOut(conn: C, slot: Slot): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.timer.cancel();
      slot.state = 'idle';
      this.#checkOut(conn);
      waiter.resolve(conn);
      return;
    }
    slot.state = 'idle';
    this.#o.hold(conn, false);
    this.#idle.push(conn);
    if (this.#o.idleTimeoutMs > 0) {
      slot.idleTimer = this.#o.clock.setTimer(() => {
        slot.idleTimer = undefined;
        const i = this.#idle.indexOf(conn);
        if (i < 0) return;
        this.#idle.splice(i, 1);
        this.#close(conn, slot);
      }, this.#o.idleTimeoutMs);
    }
  }

  /** Opens connections for the waiters that no opening connection will serve. */
  #grow(): void {
    while (
      !this.#ended &&
      this.#waiters.length > this.#opening &&
      this.#slots.size + this.#opening < this.#o.size
    ) {
      this.#opening++;
      this.#o.connect().then(
        (conn) => this.#opened(conn),
        (err: unknown) => {
          this.#opening--;
          // The waiter that asked for it learns why (a closed port fails at once, not after
          // the connect timeout).
          const w = this.#waiters.shift();
          if (w !== undefined) {
            w.timer.cancel();
            w.reject(err instanceof Error ? err : new Error(String(err)));
          }
          this.#checkDrained();
        },
      );
    }
  }

  #opened(conn: C): void {
    this.#opening--;
    const slot: Slot = { state: 'busy', since: 0, broken: false, idleTimer: undefined };
    this.#slots.set(conn, slot);
    conn.on('error', (err) => {
      if (slot.state === 'idle') {
        const i = this.#idle.indexOf(conn);
        if (i >= 0) this.#idle.splice(i, 1);
        this.#close(conn, slot);
        this.#o.onError(err, true);
      } else {
        if (slot.state === 'busy') slot.broken = true;
        this.#o.onError(err, false);
      }
    });
    if (this.#ended) {
      this.#close(conn, slot);
      return;
    }
    this.#armSweep();
    this.#handOut(conn, slot);
  }

  /** Closes `conn`; its place in the pool is free at once. */
  #close(conn: C, slot: Slot): void {
    slot.state = 'gone';
    if (slot.idleTimer !== undefined) {
      slot.idleTimer.cancel();
      slot.idleTimer = undefined;
    }
    this.#slots.delete(conn);
    this.#closing++;
    // `end()`'s caller awaits the Terminate's round trip: an idle (unref'd) socket must keep
    // the process alive for it.
    if (this.#ended) this.#o.hold(conn, true);
    const closed = () => {
      this.#closing--;
      this.#checkDrained();
    };
    conn.end().then(closed, closed);
  }

  #checkDrained(): void {
    if (this.#ended && this.size + this.#closing === 0) {
      const drained = this.#drained;
      this.#drained = undefined;
      drained?.();
    }
  }

  #armSweep(): void {
    if (this.#sweep !== undefined || this.#ended) return;
    this.#sweep = this.#o.clock.setTimer(() => {
      this.#sweep = undefined;
      this.#sweepOnce();
      if (this.#slots.size > 0) this.#armSweep();
    }, POOL_SWEEP_MS);
  }

  #sweepOnce(): void {
    const now = this.#o.clock.monotonicMs();
    for (const [conn, slot] of this.#slots) {
      if (slot.state !== 'busy' || slot.broken) continue;
      const ms = now - slot.since;
      if (ms <= this.#o.readTimeoutMs) continue;
      slot.broken = true;
      this.#o.destroy(
        conn,
        new Error(`Postgres read timeout: no answer in ${Math.round(ms)} ms, connection dropped`),
      );
    }
  }
}
