/**
 * A scoped token's rules applied to its streams (token-scopes.ts; README "Operating: auth").
 *
 * - Per message: a push or subscribe outside the token's scope is not carried out. The decision
 *   is cached per (stream, shard) — one `Map.get` per push on the hot path, the patterns matched
 *   once per shard a stream names — and the cache is dropped when a reload replaces the scope.
 * - A refusal is counted (`refused_total{caller_id, call, reason}`), logged once per caller,
 *   call, reason and shard (a bounded set: past `MAX_LOGGED_REFUSALS` it starts over), and a client that
 *   speaks extensions gets a refusal notice (`permission_denied`, naming the call) for each
 *   refused call; the stream stays up for every other shard. A reference client has no
 *   per-message error: its refused push or subscribe is dropped, counted and logged, nothing
 *   more (never a stream end, so never a reconnect loop).
 * - A reload (`reload`): a stream whose token is gone is ended with UNAUTHENTICATED (its token
 *   no longer authenticates anything; a reconnect with it is refused at admission the same
 *   way). A stream whose token stays takes the new scope at once; subscriptions the new scope no
 *   longer covers are dropped (an extension client gets a refusal notice for each). A widened
 *   scope applies to the calls made from then on; our SDK does not re-send a subscription the
 *   broker refused until the shard is subscribed anew.
 */
import type { Logger } from 'pino';
import type { Connection } from './connection.js';
import type { FanoutCore } from './fanout.js';
import { GrpcStatus } from './grpc-status.js';
import type { BrokerMetrics, RefusedReason } from './metrics.js';
import type { TokenScope, TokenTable } from './token-scopes.js';

/** Cached decisions per stream; a stream that names more shards starts its cache over. */
export const MAX_CACHED_DECISIONS = 4096;
/** Distinct (caller, call, shard) refusals logged before the set starts over. */
export const MAX_LOGGED_REFUSALS = 10_000;

const MAY_PUSH = 1;
const MAY_SUBSCRIBE = 2;

/** One scoped stream's view of its token. */
export interface StreamScope {
  readonly scope: TokenScope;
  /** Whether the token may push to `shardId` (a valid shard id). */
  mayPush(shardId: string): boolean;
  /** Whether the token may subscribe to `shardId`. */
  maySubscribe(shardId: string): boolean;
  /** Counts, logs (once) and, for an extension client, notifies one refused call. */
  refuse(call: 'push' | 'subscribe', shardId: string): void;
  /** The stream is gone. Idempotent. */
  detach(): void;
}

export interface StreamScopes {
  /** Starts applying `scope` to `conn`'s calls. */
  attach(conn: Connection, scope: TokenScope): StreamScope;
  /** A new table is in force: rescopes or ends every attached stream. */
  reload(table: TokenTable): { revokedStreams: number; droppedSubscriptions: number };
  /** Attached streams (for tests and listings). */
  readonly size: number;
}

export function createStreamScopes(deps: {
  fan: FanoutCore;
  metrics: BrokerMetrics;
  log: Logger;
}): StreamScopes {
  const { fan, metrics, log } = deps;
  const attached = new Set<Attached>();
  let logged = new Set<string>();

  function refusal(
    conn: Connection,
    scope: TokenScope,
    call: 'push' | 'subscribe',
    shardId: string,
    reason: RefusedReason,
  ): void {
    metrics.refused(conn.callerLabel, call, reason);
    const verb = call === 'push' ? 'publish to' : 'subscribe to';
    const detail =
      reason === 'revoked'
        ? `token ${JSON.stringify(scope.name)} may no longer ${verb} shard ${shardId}`
        : `token ${JSON.stringify(scope.name)} may not ${verb} shard ${shardId}`;
    const key = `${conn.callerId}\u0000${call}\u0000${reason}\u0000${shardId}`;
    if (!logged.has(key)) {
      if (logged.size >= MAX_LOGGED_REFUSALS) {
        log.warn(
          { distinct: logged.size },
          'scoped-token refusals: the once-per-shard log starts over',
        );
        logged = new Set();
      }
      logged.add(key);
      conn.log.warn(
        { shardId, call, reason, token: scope.name },
        `refused: outside the token's scope (logged once per caller, call, reason and shard)`,
      );
    }
    if (conn.extensions) fan.refuse(conn, shardId, 'permission_denied', detail, call);
  }

  class Attached implements StreamScope {
    private decisions = new Map<string, number>();
    constructor(
      readonly conn: Connection,
      public scope: TokenScope,
    ) {}

    private decide(shardId: string): number {
      let d = this.decisions.get(shardId);
      if (d === undefined) {
        d =
          (this.scope.publish.matches(shardId) ? MAY_PUSH : 0) |
          (this.scope.subscribe.matches(shardId) ? MAY_SUBSCRIBE : 0);
        if (this.decisions.size >= MAX_CACHED_DECISIONS) this.decisions.clear();
        this.decisions.set(shardId, d);
      }
      return d;
    }

    mayPush(shardId: string): boolean {
      return (this.decide(shardId) & MAY_PUSH) !== 0;
    }

    maySubscribe(shardId: string): boolean {
      return (this.decide(shardId) & MAY_SUBSCRIBE) !== 0;
    }

    refuse(call: 'push' | 'subscribe', shardId: string): void {
      refusal(this.conn, this.scope, call, shardId, 'permission_denied');
    }

    rescope(scope: TokenScope): void {
      this.scope = scope;
      this.decisions = new Map();
    }

    detach(): void {
      attached.delete(this);
    }
  }

  return {
    attach(conn, scope) {
      const s = new Attached(conn, scope);
      attached.add(s);
      return s;
    },
    reload(table) {
      let revokedStreams = 0;
      let droppedSubscriptions = 0;
      for (const s of [...attached]) {
        const { conn } = s;
        if (conn.state !== 'open') continue;
        const next = table.successor(s.scope);
        if (next === undefined) {
          revokedStreams++;
          metrics.refused(conn.callerLabel, 'stream', 'revoked');
          conn.log.info({ token: s.scope.name }, 'token revoked by a reload: ending its stream');
          s.detach();
          fan.end(
            conn,
            { code: GrpcStatus.UNAUTHENTICATED, message: 'the bearer token was revoked' },
            'end',
          );
          continue;
        }
        s.rescope(next);
        const shards = fan.table.shardsOf(conn);
        if (shards === undefined) continue;
        for (const shardId of [...shards]) {
          if (next.subscribe.matches(shardId)) continue;
          droppedSubscriptions++;
          // Through the core, so that a bridge observer sees the shard go idle.
          fan.unsubscribe(conn, shardId);
          refusal(conn, next, 'subscribe', shardId, 'revoked');
        }
      }
      return { revokedStreams, droppedSubscriptions };
    },
    get size() {
      return attached.size;
    },
  };
}
