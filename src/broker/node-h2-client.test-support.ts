/**
 * For tests that drive the broker with a `node:http2` client: where such a client may be reset
 * or destroyed.
 *
 * Node 20's http2 (20.20.2, nghttp2 1.61) frees a stream that nghttp2 is still handling when,
 * inside the JavaScript that runs while a frame with END_STREAM is received on that stream,
 * the stream is reset and then another stream of the session is: the second reset sends what
 * is pending, the first reset's RST_STREAM with it, and nghttp2 closes and frees the first
 * stream; back in its frame handling it writes into the freed memory (glibc later aborts:
 * "corrupted size vs. prev_size"). That JavaScript includes promise continuations: the
 * microtasks queued by the 'trailers' listener run when it returns, before nghttp2 goes on
 * (seen under valgrind and with NODE_DEBUG_NATIVE=http2; 'response' and 'end' are emitted the
 * same way, from a frame's handling). So a test that awaits a call's trailers and then
 * destroys the session (its `afterEach`), or closes one call after another on a shared
 * session, corrupts the heap of its worker now and then. Fixed upstream by nodejs/node#64166 (issue #64113), not in Node 20.
 * The cure is to reset or destroy on a later turn of the event loop, when nghttp2 is done.
 */

/** Resolves on the next turn of the event loop, outside any frame `node:http2` is receiving. */
export function afterH2Receive(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
