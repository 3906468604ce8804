/**
 * The publishers' pacing (`bench/pace.ts`): per 1 ms tick, evenly spread one per write, or in
 * bursts of one slot each; the same total at the same offered rate; no real timers.
 */
import { describe, expect, it } from 'vitest';
import { type Pacing, totalMessages, wake } from './pace.js';

/** Runs the schedule with a fake clock that wakes exactly when asked (at least 1 ms tick). */
function simulate(p: Pacing): { atMs: number; writes: number; perWrite: number }[] {
  const out: { atMs: number; writes: number; perWrite: number }[] = [];
  let sent = 0;
  let now = 0;
  for (let guard = 0; sent < totalMessages(p) && guard < 1_000_000; guard++) {
    const w = wake(p, now, sent);
    if (w.writes > 0) out.push({ atMs: now, writes: w.writes, perWrite: w.perWrite });
    sent += w.writes * w.perWrite;
    now = Math.max(w.nextMs, now + 0.001);
  }
  return out;
}

const sum = (ws: { writes: number; perWrite: number }[]) =>
  ws.reduce((a, w) => a + w.writes * w.perWrite, 0);

describe('wake', () => {
  it('writes everything due per tick in one write', () => {
    const ws = simulate({ pushesPerSecond: 10_000, durationMs: 100 });
    expect(sum(ws)).toBe(1000);
    expect(ws.every((w) => w.writes === 1)).toBe(true);
    expect(ws[0]).toEqual({ atMs: 1, writes: 1, perWrite: 10 });
  });

  it('spreads one message per write at even intervals', () => {
    const ws = simulate({ pushesPerSecond: 750, durationMs: 1000, spread: true });
    expect(sum(ws)).toBe(750);
    expect(ws.every((w) => w.writes === 1 && w.perWrite === 1)).toBe(true);
    const gaps = ws.slice(1).map((w, i) => w.atMs - ws[i]!.atMs);
    // Within 0.05 ms (a wake-up exactly on a due time may round below it and wake again).
    for (const g of gaps) expect(g).toBeCloseTo(1000 / 750, 1);
  });

  it('writes each burst slot at its start, one write per message, at the same rate', () => {
    const ws = simulate({ pushesPerSecond: 750, durationMs: 1000, spread: true, burstMs: 20 });
    expect(sum(ws)).toBe(750);
    expect(ws).toHaveLength(50);
    expect(ws.map((w) => w.atMs)).toEqual(Array.from({ length: 50 }, (_, i) => i * 20));
    expect(
      ws.every((w) => w.perWrite === 1 && (w.writes === 15 || w.writes === 14 || w.writes === 16)),
    ).toBe(true);
  });

  it('writes what is still due once the duration is over', () => {
    const p = { pushesPerSecond: 750, durationMs: 1000, spread: true, burstMs: 20 };
    expect(wake(p, 1500, 100)).toMatchObject({ writes: 650, perWrite: 1 });
    expect(wake({ pushesPerSecond: 750, durationMs: 1000 }, 1200, 700)).toMatchObject({
      writes: 1,
      perWrite: 50,
    });
  });
});
