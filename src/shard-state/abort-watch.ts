/**
 * One `abort` listener per `AbortSignal`, whatever the number of waits that use it. A reader
 * that passes one signal to hundreds of `listen()` or `waitForSeqno` calls (one per shard, as a
 * process following every shard does) would otherwise add a listener per call: Node's
 * MaxListenersExceededWarning, and an `addEventListener`/`removeEventListener` pair per update.
 * The listener stays on the signal for its life (it holds only an empty set when nothing waits),
 * so that a loop that waits again on the same signal costs a set insertion, not a listener.
 */

export interface AbortWatcher {
  /** Called once when the signal aborts, if still watched. */
  onAbort(reason: unknown): void;
}

const watched = new WeakMap<AbortSignal, Set<AbortWatcher>>();

/** Calls `watcher.onAbort` when `signal` aborts, unless `unwatchAbort` comes first. */
export function watchAbort(signal: AbortSignal, watcher: AbortWatcher): void {
  let set = watched.get(signal);
  if (set === undefined) {
    const watchers = new Set<AbortWatcher>();
    set = watchers;
    watched.set(signal, watchers);
    signal.addEventListener(
      'abort',
      () => {
        watched.delete(signal);
        const all = [...watchers];
        watchers.clear();
        for (const w of all) w.onAbort(signal.reason);
      },
      { once: true },
    );
  }
  set.add(watcher);
}

export function unwatchAbort(signal: AbortSignal, watcher: AbortWatcher): void {
  watched.get(signal)?.delete(watcher);
}
