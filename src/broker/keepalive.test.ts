import { describe, expect, it } from 'vitest';
import { createFakeClock } from '../util/index.js';
import { type KeepaliveSession, PING_SLOT_MS, pingDelayMs, watchSession } from './keepalive.js';

function fakeSession(answer: 'ok' | 'never' | 'error' | 'throw') {
  const s = {
    destroyed: false,
    closed: false,
    pings: 0,
    ping(cb: (err: Error | null) => void): boolean {
      s.pings++;
      if (answer === 'throw') throw new Error('session closing');
      if (answer === 'ok') queueMicrotask(() => cb(null));
      if (answer === 'error') queueMicrotask(() => cb(new Error('ping failed')));
      return true;
    },
    destroy() {
      s.destroyed = true;
    },
  };
  return s satisfies KeepaliveSession;
}

const base = { keepaliveTimeMs: 1000, keepaliveTimeoutMs: 300, maxConnectionAgeMs: 0 };

describe('watchSession', () => {
  it('pings every keepaliveTimeMs while the peer answers', async () => {
    const clock = createFakeClock();
    const s = fakeSession('ok');
    const stop = watchSession(s, { ...base, clock, onAgeOut: () => {} });
    await clock.advance(999);
    expect(s.pings).toBe(0);
    await clock.advance(1);
    expect(s.pings).toBe(1);
    await clock.advance(3000);
    expect(s.pings).toBe(4);
    expect(s.destroyed).toBe(false);
    stop();
    expect(clock.pending()).toBe(0);
  });

  it('puts the pings of sessions opened at different times in the same slot', async () => {
    expect(PING_SLOT_MS).toBe(100);
    expect(pingDelayMs(0, 1000)).toBe(1000);
    expect(pingDelayMs(30, 1000)).toBe(1070);
    expect(pingDelayMs(1099.5, 1000)).toBeCloseTo(1000.5);
    const clock = createFakeClock();
    const a = fakeSession('ok');
    const b = fakeSession('ok');
    await clock.advance(30);
    const stopA = watchSession(a, { ...base, clock, onAgeOut: () => {} });
    await clock.advance(40);
    const stopB = watchSession(b, { ...base, clock, onAgeOut: () => {} });
    await clock.advance(1099 - 70);
    expect([a.pings, b.pings]).toEqual([0, 0]);
    await clock.advance(1);
    expect([a.pings, b.pings]).toEqual([1, 1]);
    // Acked at once: the next ones are a full interval later, still together.
    await clock.advance(999);
    expect([a.pings, b.pings]).toEqual([1, 1]);
    await clock.advance(1);
    expect([a.pings, b.pings]).toEqual([2, 2]);
    stopA();
    stopB();
    expect(clock.pending()).toBe(0);
  });

  it('destroys the session when a ping is unanswered for keepaliveTimeoutMs', async () => {
    const clock = createFakeClock();
    const s = fakeSession('never');
    let dead = 0;
    watchSession(s, { ...base, clock, onAgeOut: () => {}, onDead: () => dead++ });
    await clock.advance(1299);
    expect(s.destroyed).toBe(false);
    await clock.advance(1);
    expect(s.destroyed).toBe(true);
    expect(dead).toBe(1);
    expect(clock.pending()).toBe(0);
  });

  it('destroys the session when the ping fails or throws', async () => {
    for (const answer of ['error', 'throw'] as const) {
      const clock = createFakeClock();
      const s = fakeSession(answer);
      watchSession(s, { ...base, clock, onAgeOut: () => {} });
      await clock.advance(1000);
      expect(s.destroyed).toBe(true);
      expect(clock.pending()).toBe(0);
    }
  });

  it('ages the session out after maxConnectionAgeMs ± 10 %', async () => {
    for (const [random, at] of [
      [0, 900],
      [0.5, 1000],
      [0.999999, 1100],
    ] as const) {
      const clock = createFakeClock();
      let aged = 0;
      watchSession(fakeSession('ok'), {
        keepaliveTimeMs: 0,
        keepaliveTimeoutMs: 1,
        maxConnectionAgeMs: 1000,
        clock,
        random: () => random,
        onAgeOut: () => aged++,
      });
      await clock.advance(at - 1);
      expect(aged).toBe(0);
      await clock.advance(1);
      expect(aged).toBe(1);
    }
  });

  it('sets no timer when both are disabled, and stop() is idempotent', () => {
    const clock = createFakeClock();
    const stop = watchSession(fakeSession('ok'), {
      keepaliveTimeMs: 0,
      keepaliveTimeoutMs: 1,
      maxConnectionAgeMs: 0,
      clock,
      onAgeOut: () => {},
    });
    expect(clock.pending()).toBe(0);
    stop();
    stop();
  });
});
