/** For tests: counts the listeners currently added to `signal` (adds minus removes). */
export function countListeners(signal: AbortSignal): () => number {
  let n = 0;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = ((...a: Parameters<typeof add>) => {
    n++;
    add(...a);
  }) as typeof add;
  signal.removeEventListener = ((...a: Parameters<typeof remove>) => {
    n--;
    remove(...a);
  }) as typeof remove;
  return () => n;
}
