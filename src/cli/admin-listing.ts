/**
 * Reads a broker's paginated admin listing (`/v1/shards`, `/v1/connections`; see
 * `broker/admin-server.ts`) to the end, one page in memory at a time: an async generator of
 * items that follows `next_page_token` until none is returned (a page may be empty while a
 * token still comes back). Leaving the loop early (`--limit`) fetches no further page.
 */
import { CliError } from './cli-error.js';

/** Items asked for per request. */
export const DEFAULT_ADMIN_PAGE_SIZE = 500;

export interface AdminListingOptions {
  /** The admin base URL, `http://HOST:PORT`. */
  admin: string;
  /** `/v1/shards` or `/v1/connections`. */
  path: string;
  /** The JSON field holding the page's items: `shards` or `connections`. */
  key: string;
  /** @default DEFAULT_ADMIN_PAGE_SIZE */
  pageSize?: number | undefined;
  signal?: AbortSignal | undefined;
  /** @default globalThis.fetch */
  fetch?: typeof globalThis.fetch | undefined;
}

/** Checks `--admin` once: an `http://` or `https://` URL with no query. */
export function parseAdminUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CliError('invalid_argument', `--admin: ${JSON.stringify(value)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CliError('invalid_argument', `--admin must be http://HOST:PORT, got ${value}`);
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
}

export async function* listAdmin<T>(options: AdminListingOptions): AsyncGenerator<T> {
  const doFetch = options.fetch ?? globalThis.fetch;
  const pageSize = options.pageSize ?? DEFAULT_ADMIN_PAGE_SIZE;
  let token: string | undefined;
  do {
    const q = new URLSearchParams({ page_size: String(pageSize) });
    if (token !== undefined) q.set('page_token', token);
    const url = `${options.admin}${options.path}?${q}`;
    let res: Response;
    try {
      res = await doFetch(url, { signal: options.signal ?? null });
    } catch (err) {
      const why = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new CliError(
        'unreachable',
        `cannot reach the admin endpoint ${options.admin}: ${why}`,
        {
          cause: err,
        },
      );
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch (err) {
      throw new CliError('bad_response', `${url}: HTTP ${res.status}, not JSON`, { cause: err });
    }
    if (!res.ok) {
      const message = (body as { error?: { message?: unknown } }).error?.message;
      throw new CliError(
        'http_error',
        `${url}: HTTP ${res.status}${typeof message === 'string' ? `: ${message}` : ''}`,
      );
    }
    const page = body as Record<string, unknown>;
    const items = page[options.key];
    if (!Array.isArray(items)) {
      throw new CliError('bad_response', `${url}: no "${options.key}" list in the answer`);
    }
    const next = page.next_page_token;
    if (next !== undefined && typeof next !== 'string') {
      throw new CliError('bad_response', `${url}: next_page_token is not a string`);
    }
    if (next !== undefined && next !== '' && next === token) {
      // A broker that hands back the token it was given would keep this loop going forever.
      throw new CliError(
        'bad_response',
        `${url}: next_page_token repeats the page token asked for`,
      );
    }
    for (const item of items) yield item as T;
    token = next === '' ? undefined : next;
  } while (token !== undefined);
}
