import { describe, expect, it } from 'vitest';
import { countListeners } from './abort-listeners.test-support.js';
import { raceSignal } from './race-signal.js';

describe('raceSignal', () => {
  it('resolves with the promise when the signal stays quiet, and leaves no listener', async () => {
    const ac = new AbortController();
    const listeners = countListeners(ac.signal);
    expect(await raceSignal(Promise.resolve(7), ac.signal)).toBe(7);
    await expect(raceSignal(Promise.reject(new Error('x')), ac.signal)).rejects.toThrow('x');
    expect(listeners()).toBe(0);
  });

  it('rejects with the reason, or the mapped error, as soon as the signal aborts', async () => {
    const never = new Promise<number>(() => {});
    const ac = new AbortController();
    const raced = raceSignal(never, ac.signal);
    const mapped = raceSignal(never, ac.signal, () => new Error('mapped'));
    ac.abort(new Error('why'));
    await expect(raced).rejects.toThrow('why');
    await expect(mapped).rejects.toThrow('mapped');
    await expect(raceSignal(never, ac.signal)).rejects.toThrow('why');
  });

  it('is the promise itself without a signal', () => {
    const p = Promise.resolve(1);
    expect(raceSignal(p, undefined)).toBe(p);
  });

  it('concurrent races on one signal share its one listener, removed when the last settles', async () => {
    const ac = new AbortController();
    const listeners = countListeners(ac.signal);
    const resolvers: Array<(v: number) => void> = [];
    const raced = Array.from({ length: 50 }, () =>
      raceSignal(new Promise<number>((r) => resolvers.push(r)), ac.signal),
    );
    expect(listeners()).toBe(1);
    for (const [i, r] of resolvers.entries()) r(i);
    expect(await Promise.all(raced)).toEqual(resolvers.map((_, i) => i));
    expect(listeners()).toBe(0);
  });
});
