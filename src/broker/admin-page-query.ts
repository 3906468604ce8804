/**
 * Parsing a listing's query string (`?page_size=&page_token=`) at the edge, into a typed
 * `PageRequest` or a message naming the bad parameter. Follows AIP-158: `page_size` absent or 0
 * means the server's default; the token is opaque and passed through as it came.
 */
import type { PageRequest } from './types.js';

/** The largest `page_size` the admin listings accept. */
export const MAX_ADMIN_PAGE_SIZE = 10_000;
/** The longest `page_token` accepted, in characters; real tokens are far shorter. */
export const MAX_ADMIN_PAGE_TOKEN_CHARS = 1024;

const PARAMS = new Set(['page_size', 'page_token']);

export type PageQueryResult = { ok: true; request: PageRequest } | { ok: false; message: string };

export function parsePageQuery(params: URLSearchParams): PageQueryResult {
  for (const name of new Set(params.keys())) {
    if (!PARAMS.has(name)) {
      return {
        ok: false,
        message: `unknown query parameter ${JSON.stringify(name)}; known: page_size, page_token`,
      };
    }
    if (params.getAll(name).length > 1) {
      return { ok: false, message: `${name} is given more than once` };
    }
  }
  const request: PageRequest = {};
  const size = params.get('page_size');
  if (size !== null) {
    if (!/^[0-9]{1,6}$/.test(size) || Number(size) > MAX_ADMIN_PAGE_SIZE) {
      return {
        ok: false,
        message: `page_size must be an integer in [0, ${MAX_ADMIN_PAGE_SIZE}], got ${JSON.stringify(size.slice(0, 40))}`,
      };
    }
    const n = Number(size);
    if (n > 0) request.pageSize = n;
  }
  const token = params.get('page_token');
  if (token !== null && token !== '') {
    if (token.length > MAX_ADMIN_PAGE_TOKEN_CHARS) {
      return {
        ok: false,
        message: `page_token is ${token.length} characters; at most ${MAX_ADMIN_PAGE_TOKEN_CHARS}`,
      };
    }
    request.pageToken = token;
  }
  return { ok: true, request };
}
