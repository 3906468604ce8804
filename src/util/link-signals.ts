import { type AbortWatcher, releaseAbort, watchAbort } from './abort-watch.js';

/** A signal derived from several, and the way to detach it from them. */
export interface LinkedSignal {
  /** Aborted, with the first source's reason, as soon as any source aborts. */
  readonly signal: AbortSignal;
  /** Removes the listeners from every source. Idempotent; call it when the operation ends. */
  unlink(): void;
}

/**
 * A signal aborted when any of `sources` aborts (`undefined` entries are skipped), with the
 * reason of the first one that does; already aborted if one already is. Not `AbortSignal.any`:
 * on Node 20 every composite of a long-lived source (a handle's closing signal) stays reachable
 * from that source, so one composite per call leaked about 1 KB each (nodejs/node#55351).
 */
export function linkSignals(...sources: readonly (AbortSignal | undefined)[]): LinkedSignal {
  const ac = new AbortController();
  const live = sources.filter((s): s is AbortSignal => s !== undefined);
  const first = live.find((s) => s.aborted);
  if (first !== undefined) {
    ac.abort(first.reason);
    return { signal: ac.signal, unlink() {} };
  }
  const unlink = (): void => {
    for (const s of live) releaseAbort(s, watcher);
  };
  const watcher: AbortWatcher = {
    onAbort(reason) {
      unlink();
      ac.abort(reason);
    },
  };
  // One listener per source, however many links share it (`abort-watch.ts`).
  for (const s of live) watchAbort(s, watcher);
  return { signal: ac.signal, unlink };
}
