/**
 * The socket file of a Unix socket listener (`BrokerOptions.listen: { path }`): before binding,
 * a file left at the path by a broker that died is removed, but only if it is a socket and
 * nothing accepts on it (a connect fails with ECONNREFUSED); a live socket, or a file of another
 * kind, is a `BrokerError` that says which, and nothing is removed. After binding, the mode is
 * applied. The listener itself removes the file when it closes (libuv unlinks a pipe's path).
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { BrokerError } from './errors.js';

const errno = (err: unknown): string | undefined => (err as { code?: string }).code;

/** How a connect to an existing socket file went: someone accepts, or nobody does. */
function probe(path: string): Promise<'listening' | 'stale'> {
  return new Promise((resolve, reject) => {
    const s = connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve('listening');
    });
    s.once('error', (err) => {
      s.destroy();
      const code = errno(err);
      // ECONNREFUSED: a socket file with no listener. ENOENT: it went away meanwhile.
      if (code === 'ECONNREFUSED' || code === 'ENOENT') resolve('stale');
      else reject(err);
    });
  });
}

/** Clears the way for binding `path`: see the file comment. */
export async function prepareSocketPath(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (err) {
    if (errno(err) === 'ENOENT') return;
    throw new BrokerError(
      'unavailable',
      `cannot check the socket path ${path}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  if (!isSocket) {
    throw new BrokerError(
      'invalid_argument',
      `the socket path ${path} exists and is not a socket; not removing it`,
    );
  }
  let state: 'listening' | 'stale';
  try {
    state = await probe(path);
  } catch (err) {
    throw new BrokerError(
      'unavailable',
      `cannot probe the socket ${path}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  if (state === 'listening') {
    throw new BrokerError(
      'unavailable',
      `the socket ${path} is in use: another process accepts connections on it`,
    );
  }
  try {
    await unlink(path);
  } catch (err) {
    if (errno(err) !== 'ENOENT') {
      throw new BrokerError(
        'unavailable',
        `cannot remove the stale socket ${path}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }
}

/** Sets the socket file's permission bits (`listen.mode`). */
export async function applySocketMode(path: string, mode: number): Promise<void> {
  try {
    await chmod(path, mode);
  } catch (err) {
    throw new BrokerError(
      'unavailable',
      `cannot set mode ${mode.toString(8)} on the socket ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}
