/**
 * Keyset pagination over an unordered collection without sorting it: the `limit` smallest
 * keys greater than `after`, ascending. Costs O(n log limit) time and O(limit) memory, so an
 * admin listing of 100k shards never sorts (or copies) all of them on the broker's event loop.
 */
export function smallestAfter(
  keys: Iterable<string>,
  after: string | undefined,
  limit: number,
): string[] {
  // A max-heap of the `limit` smallest keys seen so far; its root is the largest of them.
  const heap: string[] = [];
  for (const key of keys) {
    if (after !== undefined && key <= after) continue;
    if (heap.length < limit) {
      heap.push(key);
      siftUp(heap, heap.length - 1);
    } else if (key < heap[0]!) {
      heap[0] = key;
      siftDown(heap, 0);
    }
  }
  return heap.sort();
}

function siftUp(heap: string[], i: number): void {
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent]! >= heap[i]!) return;
    [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
    i = parent;
  }
}

function siftDown(heap: string[], i: number): void {
  for (;;) {
    const left = 2 * i + 1;
    const right = left + 1;
    let largest = i;
    if (left < heap.length && heap[left]! > heap[largest]!) largest = left;
    if (right < heap.length && heap[right]! > heap[largest]!) largest = right;
    if (largest === i) return;
    [heap[largest], heap[i]] = [heap[i]!, heap[largest]!];
    i = largest;
  }
}
