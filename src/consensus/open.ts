import { ConsensusError } from './errors.js';
import { instrumentConsensus } from './instrument.js';
import { createMemoryConsensus } from './memory.js';
import { openSqliteConsensus } from './sqlite.js';
import type { Consensus, OpenConsensusOptions } from './types.js';

/** The URL forms `openConsensus` accepts, for error messages and docs. */
export const CONSENSUS_URL_FORMS = [
  'mem:',
  'sqlite:PATH',
  'sqlite::memory:',
  'postgres://...',
  'postgresql://...',
  'redis://...',
  'rediss://...',
] as const;

/**
 * Opens the Consensus a URL names:
 *
 * - `mem:` a new in-memory store (this process only; each call is a separate store);
 * - `sqlite:PATH` a SQLite file, the embedded default, shareable between processes on one host
 *   (`sqlite:///abs/path` works too); `sqlite::memory:` a private in-memory SQLite database;
 * - `postgres://…` / `postgresql://…` Postgres or CockroachDB;
 * - `redis://…` / `rediss://…` Redis or Valkey.
 *
 * The Postgres and Redis drivers are only loaded when such a URL is opened. With a `registry`
 * the result is instrumented (`instrumentConsensus`). Anything else is `invalid_argument`.
 */
export async function openConsensus(
  url: string,
  options: OpenConsensusOptions = {},
): Promise<Consensus> {
  if (typeof options !== 'object' || options === null) {
    throw new ConsensusError('invalid_argument', 'openConsensus options must be an object');
  }
  const consensus = await openBackend(url, options);
  if (options.registry === undefined) return consensus;
  try {
    return instrumentConsensus(consensus, { registry: options.registry });
  } catch (err) {
    await consensus.close().catch(() => undefined);
    throw err;
  }
}

async function openBackend(url: string, options: OpenConsensusOptions): Promise<Consensus> {
  if (typeof url !== 'string') {
    throw new ConsensusError('invalid_argument', 'the Consensus URL must be a string');
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  switch (scheme) {
    case 'mem':
      if (url.length !== 'mem:'.length) break;
      return createMemoryConsensus();
    case 'sqlite': {
      let path = url.slice('sqlite:'.length);
      if (path.startsWith('//')) path = path.slice(2);
      if (path.length === 0) {
        throw new ConsensusError('invalid_argument', `${url}: sqlite needs a path (sqlite:PATH)`);
      }
      return openSqliteConsensus(path, options);
    }
    case 'postgres':
    case 'postgresql': {
      const { openPostgresConsensus } = await loadBackend(
        'postgres',
        () => import('./postgres.js'),
      );
      return openPostgresConsensus(url, options);
    }
    case 'redis':
    case 'rediss': {
      const { openRedisConsensus } = await loadBackend('redis', () => import('./redis.js'));
      return openRedisConsensus(url, options);
    }
  }
  throw new ConsensusError(
    'invalid_argument',
    `unsupported Consensus URL ${JSON.stringify(redact(url))}; accepted: ${CONSENSUS_URL_FORMS.join(', ')}`,
  );
}

/**
 * Loads a backend module on first use, so that a program on SQLite never loads `pg` or
 * `ioredis`; a module that fails to load (a driver missing from the install) is `unavailable`.
 */
async function loadBackend<M>(name: string, load: () => Promise<M>): Promise<M> {
  try {
    return await load();
  } catch (err) {
    throw new ConsensusError('unavailable', `the ${name} Consensus backend cannot be loaded`, {
      cause: err,
    });
  }
}

/** Hides a password in a URL before it goes into an error message. */
function redact(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, '$1***@');
}
