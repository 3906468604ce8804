/**
 * Abort handling shared by the networked backends (Postgres, Redis). A request that has been
 * sent cannot be recalled, so an abort mid-flight stops the caller waiting but not the server:
 * for a write the outcome is then unknown (`indeterminate`), for a read it is `aborted`.
 */
import { ConsensusError } from './errors.js';

/**
 * Resolves with `promise` unless `signal` fires first; then rejects with `aborted`, or with
 * `indeterminate` if `inFlightWrite` (the write may still apply). `late` receives the value if
 * it arrives after the abort (to release a pooled connection, for example).
 */
export function raceAbort<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  late: (value: T) => void,
  inFlightWrite = false,
): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const onAbort = () => {
      if (settled) return;
      settled = true;
      reject(
        inFlightWrite
          ? new ConsensusError('indeterminate', 'aborted while the write was in flight', {
              cause: signal.reason,
            })
          : new ConsensusError('aborted', 'the call was aborted', { cause: signal.reason }),
      );
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (settled) late(value);
        else {
          settled = true;
          resolve(value);
        }
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        if (!settled) {
          settled = true;
          reject(err);
        }
      },
    );
  });
}

/**
 * Sleeps `ms` (a retry backoff); rejects with `aborted` if `signal` fires first. The timer is
 * deliberately NOT unref()'d: a caller is awaiting it, and between attempts it may be the only
 * handle left (a `pg` pool with `allowExitOnIdle` unrefs idle sockets), so an unref'd timer
 * would let Node exit in the middle of the call.
 */
export function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new ConsensusError('aborted', 'the call was aborted', { cause: signal?.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}
