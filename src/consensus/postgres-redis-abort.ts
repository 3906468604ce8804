/**
 * Abort handling shared by the networked backends (Postgres, Redis). A request that has been
 * sent cannot be recalled, so an abort mid-flight stops the caller waiting but not the server:
 * for a write the outcome is then unknown (`indeterminate`), for a read it is `aborted`.
 */
import { type AbortWatcher, unwatchAbort, watchAbort } from '../util/index.js';
import { ConsensusError } from './errors.js';

/** The error of a call whose signal fired before it was sent or while it waited to retry. */
export const abortedError = (signal: AbortSignal): ConsensusError =>
  new ConsensusError('aborted', 'the call was aborted', { cause: signal.reason });

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
    // One listener per signal however many calls wait on it (src/util/abort-watch.ts): a
    // handle passes its closing signal to every call, so a listener pair per call is saved.
    const watcher: AbortWatcher = {
      onAbort: () => {
        if (settled) return;
        settled = true;
        reject(
          inFlightWrite
            ? new ConsensusError('indeterminate', 'aborted while the write was in flight', {
                cause: signal.reason,
              })
            : abortedError(signal),
        );
      },
    };
    if (signal.aborted) watcher.onAbort(signal.reason);
    else watchAbort(signal, watcher);
    promise.then(
      (value) => {
        unwatchAbort(signal, watcher);
        if (settled) late(value);
        else {
          settled = true;
          resolve(value);
        }
      },
      (err: unknown) => {
        unwatchAbort(signal, watcher);
        if (!settled) {
          settled = true;
          reject(err);
        }
      },
    );
  });
}
