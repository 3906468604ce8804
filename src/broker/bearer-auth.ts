/**
 * The optional bearer token of the PubSub call (`authorization: Bearer <token>`): compared in
 * constant time on SHA-256 digests, so neither the token's length nor a prefix leaks by timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http2';
import { bearerToken } from '../protocol/index.js';

/** A check of the request headers; always true when no token is configured. */
export function createBearerAuth(token: string | undefined): (h: IncomingHttpHeaders) => boolean {
  if (token === undefined) return () => true;
  const digest = createHash('sha256').update(token).digest();
  return (headers) => {
    const given = bearerToken(headers.authorization);
    if (given === undefined) return false;
    return timingSafeEqual(createHash('sha256').update(given).digest(), digest);
  };
}
