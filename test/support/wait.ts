/** Waiting in integration tests: poll a condition, or read a pubsub event stream up to a kind. */
import type { PubSubEvent } from '../../src/client/index.js';

/**
 * Polls `check` (which may be async, e.g. a metrics scrape) every 5 ms until it is true;
 * rejects after `timeoutMs`, naming `what`.
 */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Whether `p` has settled after the event loop had a few turns (no clock movement). */
export async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => {
    done = true;
  });
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  return done;
}

/** The next event of `kind` from `it`, skipping others; rejects if the stream ends first. */
export async function nextOf<K extends PubSubEvent['kind']>(
  it: AsyncIterator<PubSubEvent>,
  kind: K,
): Promise<Extract<PubSubEvent, { kind: K }>> {
  for (;;) {
    const r = await it.next();
    if (r.done) throw new Error('stream ended');
    if (r.value.kind === kind) return r.value as Extract<PubSubEvent, { kind: K }>;
  }
}
