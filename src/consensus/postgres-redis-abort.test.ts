import { describe, expect, it } from 'vitest';
import { countListeners } from '../util/abort-listeners.test-support.js';
import { createFakeClock, sleep } from '../util/index.js';
import { ConsensusError } from './errors.js';
import { abortedError, raceAbort } from './postgres-redis-abort.js';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

async function rejection(p: Promise<unknown>): Promise<ConsensusError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConsensusError);
  return err as ConsensusError;
}

describe('raceAbort', () => {
  it('passes the result through when the signal never fires', async () => {
    const ac = new AbortController();
    expect(await raceAbort(Promise.resolve(7), ac.signal, () => undefined)).toBe(7);
    await expect(
      raceAbort(Promise.reject(new Error('x')), ac.signal, () => undefined),
    ).rejects.toThrow('x');
  });

  it('rejects a read with aborted and a write with indeterminate; hands the late value over', async () => {
    for (const write of [false, true]) {
      const d = deferred<string>();
      const ac = new AbortController();
      const late: string[] = [];
      const raced = raceAbort(d.promise, ac.signal, (v) => late.push(v), write);
      ac.abort(new Error('stop'));
      const err = await rejection(raced);
      expect(err.code).toBe(write ? 'indeterminate' : 'aborted');
      expect(err.determinate).toBe(!write);
      d.resolve('connection');
      await d.promise;
      await Promise.resolve();
      expect(late).toEqual(['connection']);
    }
  });

  it('adds one listener to a signal for any number of calls, and each call ends its watch', async () => {
    const ac = new AbortController();
    const listeners = countListeners(ac.signal);
    const pending = Array.from({ length: 50 }, () => deferred<number>());
    const raced = pending.map((d) => raceAbort(d.promise, ac.signal, () => undefined, true));
    expect(listeners()).toBe(1);
    // Settled calls no longer react to the signal; the pending ones do.
    pending.slice(0, 25).forEach((d, i) => {
      d.resolve(i);
    });
    expect(await Promise.all(raced.slice(0, 25))).toEqual([...Array(25).keys()]);
    ac.abort(new Error('closing'));
    const errs = await Promise.all(raced.slice(25).map(rejection));
    expect(errs.map((e) => e.code)).toEqual(Array(25).fill('indeterminate'));
    // The next call on the aborted signal rejects at once.
    expect(
      (await rejection(raceAbort(new Promise(() => {}), ac.signal, () => undefined))).code,
    ).toBe('aborted');
  });

  it('rejects at once for an already-aborted signal', async () => {
    const ac = new AbortController();
    ac.abort();
    expect(
      (await rejection(raceAbort(new Promise(() => {}), ac.signal, () => undefined))).code,
    ).toBe('aborted');
  });
});

describe('the retry sleep (util sleep with abortedError)', () => {
  it('rejects aborted when its signal fires', async () => {
    const ac = new AbortController();
    const clock = createFakeClock();
    const slept = sleep(60_000, { clock, signal: ac.signal, abortError: abortedError });
    ac.abort();
    expect((await rejection(slept)).code).toBe('aborted');
    expect(clock.pending()).toBe(0);
  });
});
