/**
 * The `own` HTTP/2 server's listener: a `net` server whose accepted sockets are read with
 * `onread` into one read buffer shared by every connection (each read is copied out of it at
 * once, so the buffer is free again before the next read), each served by our server session
 * (`h2-server-session.ts`), whose flushes are all copied into one write slab (`write-slab.ts`).
 * Plain h2c only: TLS is `node-h2-server.ts`'s.
 *
 * `net.Server` has no `onread` option for the sockets it accepts, so each accepted socket's
 * handle is moved into a new `net.Socket` constructed with `onread` (Node's own accept path
 * does the same construction, without `onread`); the listener is paused on connect so that no
 * byte is read before. Where the handle is not reachable (another runtime), the accepted socket
 * is read with 'data' events instead.
 */
import { createServer, type Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Clock } from '../util/index.js';
import { createH2ServerSession, type H2ServerConnection } from './h2-server-session.js';
import type { H2ServerEvents, H2ServerSettings } from './server-stream.js';
import { createWriteSlab } from './write-slab.js';

const READ_BUFFER_BYTES = 64 * 1024;

/**
 * Moves the accepted socket's handle into a socket read by `onread` (see the file comment).
 * `onChunk` returns false to stop reading until `resume()`.
 */
function adoptWithOnread(
  accepted: Socket,
  read: Buffer,
  onChunk: (chunk: Buffer) => boolean,
): Socket {
  const holder = accepted as unknown as { _handle?: object | null };
  const handle = holder._handle;
  if (handle === undefined || handle === null) {
    accepted.on('data', (chunk: Buffer) => {
      if (!onChunk(chunk)) accepted.pause();
    });
    accepted.resume();
    return accepted;
  }
  holder._handle = null;
  // Destroying the handle-less shell only settles the server's connection count.
  accepted.destroy();
  return new Socket({
    handle,
    readable: true,
    writable: true,
    onread: {
      buffer: read,
      // false pauses the socket.
      callback: (nread: number, buf: Uint8Array): boolean =>
        onChunk(Buffer.from(buf.subarray(0, nread))),
    },
  } as ConstructorParameters<typeof Socket>[0]);
}

/**
 * A plain-TCP HTTP/2 server on our session, reporting to `events`. Listening is the caller's.
 * After each read, `readPaused()` true (the fan-out core's turn is over its budget) stops reading
 * that socket until a later turn at whose end it is false (the turn's writes, budgeted too, have
 * caught up): a backlog that piled up in the kernel while the broker was descheduled is then
 * handled a slice per turn, each flushed and written before the next is read, instead of in one
 * synchronous run (up to libuv's 32 reads of 64 KiB) that holds all of it.
 */
export function createOwnH2Server(
  settings: H2ServerSettings,
  events: H2ServerEvents,
  log: Logger,
  clock: Clock,
  readPaused?: () => boolean,
): Server {
  const read = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  // Every session's flushes are copied into one slab (`write-slab.ts`).
  const slab = createWriteSlab();
  const srv = createServer({ pauseOnConnect: true, noDelay: true });
  srv.on('connection', (accepted: Socket) => {
    let conn: H2ServerConnection | undefined;
    // At the end of each later turn (after the core's flush of it) until the budget allows.
    const resumeLater = (): void => {
      if (socket.destroyed) return;
      if (readPaused?.() === true) setImmediate(resumeLater);
      else socket.resume();
    };
    const socket = adoptWithOnread(accepted, read, (chunk) => {
      conn?.receive(chunk);
      if (readPaused?.() !== true) return true;
      setImmediate(resumeLater);
      return false;
    });
    socket.on('error', (err) => log.debug({ err }, 'socket error'));
    events.onConnection(socket);
    if (socket.destroyed) return;
    conn = createH2ServerSession(
      socket,
      settings,
      {
        onStream: events.onStream,
        onProtocolError: (code, message) =>
          log.debug({ h2Code: code, detail: message }, 'HTTP/2 protocol error: GOAWAY'),
      },
      clock,
      slab,
    );
    events.onSession(conn.session);
  });
  return srv;
}
