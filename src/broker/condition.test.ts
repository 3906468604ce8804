import { describe, expect, it } from 'vitest';
import { createFakeClock } from '../util/index.js';
import { createCondition } from './condition.js';

describe('createCondition', () => {
  it('resolves at once when the condition already holds', async () => {
    const c = createCondition(createFakeClock());
    await c.waitFor(() => true, 1000);
  });

  it('resolves on the notify that makes the condition true, before the deadline', async () => {
    const clock = createFakeClock();
    const c = createCondition(clock);
    let open = 2;
    let resolved = false;
    const p = c
      .waitFor(() => open === 0, 10_000)
      .then(() => {
        resolved = true;
      });
    open = 1;
    c.notify();
    await clock.advance(1);
    expect(resolved).toBe(false);
    open = 0;
    c.notify();
    await p;
    expect(resolved).toBe(true);
    expect(clock.pending()).toBe(0);
  });

  it('resolves at the deadline when the condition never holds', async () => {
    const clock = createFakeClock();
    const c = createCondition(clock);
    let resolved = false;
    void c
      .waitFor(() => false, 500)
      .then(() => {
        resolved = true;
      });
    await clock.advance(499);
    expect(resolved).toBe(false);
    await clock.advance(1);
    expect(resolved).toBe(true);
  });
});
