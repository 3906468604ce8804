import { type AbortWatcher, releaseAbort, watchAbort } from './abort-watch.js';

/**
 * `promise`, or a rejection as soon as `signal` aborts (with `abortError()`, by default the
 * signal's reason). Every race on one signal shares its one listener (`abort-watch.ts`), removed
 * when the last settles, so a long-lived signal collects no listener per call. Without a signal
 * it is `promise` itself.
 */
export function raceSignal<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  abortError: (signal: AbortSignal) => unknown = (s) => s.reason,
): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const watcher: AbortWatcher = { onAbort: () => reject(abortError(signal)) };
    // One listener per signal, however many races share it (`abort-watch.ts`).
    watchAbort(signal, watcher);
    promise.then(
      (value) => {
        releaseAbort(signal, watcher);
        resolve(value);
      },
      (err: unknown) => {
        releaseAbort(signal, watcher);
        reject(err);
      },
    );
  });
}
