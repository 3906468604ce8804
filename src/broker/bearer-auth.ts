/**
 * Who a PubSub call is (`authorization: Bearer <token>`), decided once when the call arrives:
 * - no token configured: anyone, unscoped;
 * - `authToken` (one unscoped token, `--auth-token-file`): compared in constant time on SHA-256
 *   digests, so neither the token's length nor a prefix leaks by timing; its callers name
 *   themselves with the `persist-pubsub-caller-id` header, as before;
 * - `tokens` (`--auth-tokens-file`, `token-scopes.ts`): a token of the table, scoped, named by
 *   the table (the header is not used: see token-scopes.ts for the lookup's timing).
 * Both may be set: a call that presents the single token is unscoped, one that presents a token
 * of the table is scoped; the same token in both is refused at construction and at a reload.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { bearerToken } from '../protocol/index.js';
import { BrokerError } from './errors.js';
import type { RequestHeaders } from './server-stream.js';
import type { TokenScope, TokenTable } from './token-scopes.js';

/** The caller of an admitted call: unscoped, or scoped by a token of the table. */
export type Principal =
  | { readonly kind: 'unscoped' }
  | { readonly kind: 'scoped'; readonly scope: TokenScope };

export const UNSCOPED: Principal = Object.freeze({ kind: 'unscoped' });

export interface BearerAuth {
  /** The caller, or undefined: the token is missing or wrong (UNAUTHENTICATED). */
  authenticate(headers: RequestHeaders): Principal | undefined;
  /** The token table in force, if scoped tokens are configured. */
  readonly table: TokenTable | undefined;
  /**
   * Replaces the table (a reload). Throws a `BrokerError('invalid_argument')`, leaving the old
   * table in force, if scoped tokens were not configured or the single token is one of it.
   */
  setTable(table: TokenTable): void;
}

export function createBearerAuth(options: {
  token?: string | undefined;
  tokens?: TokenTable | undefined;
}): BearerAuth {
  const { token } = options;
  const digest = token === undefined ? undefined : createHash('sha256').update(token).digest();
  const check = (t: TokenTable): TokenTable => {
    if (token !== undefined && t.lookup(token) !== undefined) {
      throw new BrokerError(
        'invalid_argument',
        'the single authToken is also a token of the scoped tokens: give it one place',
      );
    }
    return t;
  };
  let table = options.tokens === undefined ? undefined : check(options.tokens);
  return {
    authenticate(headers) {
      if (digest === undefined && table === undefined) return UNSCOPED;
      const given = bearerToken(headers.authorization);
      if (given === undefined) return undefined;
      if (digest !== undefined) {
        if (timingSafeEqual(createHash('sha256').update(given).digest(), digest)) return UNSCOPED;
      }
      const scope = table?.lookup(given);
      return scope === undefined ? undefined : { kind: 'scoped', scope };
    },
    get table() {
      return table;
    },
    setTable(next) {
      if (table === undefined) {
        throw new BrokerError(
          'invalid_argument',
          'setTokens: this broker was created without tokens (BrokerOptions.tokens)',
        );
      }
      table = check(next);
    },
  };
}
