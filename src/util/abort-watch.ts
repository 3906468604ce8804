/**
 * One `abort` listener per `AbortSignal`, whatever the number of waits, links and races that use
 * it. A reader that passes one signal to hundreds of `listen()` or `waitForSeqno` calls (one per
 * shard, as a process following every shard does), or a writer that passes one to many
 * concurrent `update()` calls, would otherwise add a listener per call: Node's
 * MaxListenersExceededWarning past ten, and an `addEventListener`/`removeEventListener` pair
 * per call.
 *
 * Two ways to stop watching: `unwatchAbort` leaves the listener on the signal for its life (it
 * holds only an empty set when nothing watches), so that a loop that waits again on the same
 * signal costs a set insertion, not a listener (the shard-state waits); `releaseAbort` also
 * removes the listener once no watcher is left, so that a long-lived signal keeps nothing for
 * an operation that has ended (`linkSignals`, `raceSignal`).
 */

export interface AbortWatcher {
  /** Called once when the signal aborts, if still watched. */
  onAbort(reason: unknown): void;
}

interface Watched {
  readonly watchers: Set<AbortWatcher>;
  readonly listener: () => void;
}

const watched = new WeakMap<AbortSignal, Watched>();

/** Calls `watcher.onAbort` when `signal` aborts, unless `unwatchAbort`/`releaseAbort` comes first. */
export function watchAbort(signal: AbortSignal, watcher: AbortWatcher): void {
  let entry = watched.get(signal);
  if (entry === undefined) {
    const watchers = new Set<AbortWatcher>();
    const listener = (): void => {
      signal.removeEventListener('abort', listener);
      watched.delete(signal);
      const all = [...watchers];
      watchers.clear();
      for (const w of all) w.onAbort(signal.reason);
    };
    entry = { watchers, listener };
    watched.set(signal, entry);
    signal.addEventListener('abort', listener);
  }
  entry.watchers.add(watcher);
}

/** Stops watching; the signal's listener stays for the next watcher. */
export function unwatchAbort(signal: AbortSignal, watcher: AbortWatcher): void {
  watched.get(signal)?.watchers.delete(watcher);
}

/** Stops watching, and removes the signal's listener when no watcher is left. */
export function releaseAbort(signal: AbortSignal, watcher: AbortWatcher): void {
  const entry = watched.get(signal);
  if (entry === undefined) return;
  entry.watchers.delete(watcher);
  if (entry.watchers.size > 0) return;
  watched.delete(signal);
  signal.removeEventListener('abort', entry.listener);
}
