/**
 * Randomized fault schedules (message drop/duplicate/reorder/delay/cut through a fault
 * transport; TCP cut/stall/slow/half-open through a proxy; broker restarts; skewed client
 * clocks), each from a seed. CI runs a short budget; `node scripts/faults-long.mjs` runs ≥ 1000.
 * A failure prints `FAULT_SEED=<seed>`: `FAULT_SEED=<seed> npx vitest run test/fault/schedules`
 * replays that schedule's decisions.
 */
import { describe, expect, it } from 'vitest';
import { scheduleSeeds } from '../support/fault-rng.js';
import { CATCH_UP_BOUND_MS, runSchedule } from '../support/fault-schedule.js';

const COUNT = Number(process.env.FAULT_SCHEDULES ?? 6);
const seeds = scheduleSeeds(COUNT);
const totals: Record<string, number> = {};
let maxCatchUpMs = 0;
let divergences = 0;

describe('randomized fault schedules', () => {
  it.each(seeds)(
    'seed %i: no reader diverges, every reader reaches the head after the faults',
    async (seed) => {
      let result: Awaited<ReturnType<typeof runSchedule>>;
      try {
        result = await runSchedule(seed);
      } catch (err) {
        throw new Error(`schedule failed; replay with FAULT_SEED=${seed}: ${String(err)}`, {
          cause: err,
        });
      }
      for (const [k, v] of Object.entries(result.faults)) totals[k] = (totals[k] ?? 0) + v;
      totals.commits = (totals.commits ?? 0) + result.commits;
      totals.observations = (totals.observations ?? 0) + result.observations;
      maxCatchUpMs = Math.max(maxCatchUpMs, result.catchUpMs);
      divergences += result.divergences.length;
      const where = `FAULT_SEED=${seed} plan=${JSON.stringify(result.plan)}`;
      expect(result.divergences, where).toEqual([]);
      expect(result.processErrors, where).toEqual([]);
      expect(result.catchUpMs, where).toBeLessThanOrEqual(CATCH_UP_BOUND_MS);
      // Every client saw at least the final head (it observed something at all).
      expect(result.observations, where).toBeGreaterThan(0);
    },
    120_000,
  );

  it('summary', () => {
    console.log(
      `[faults] schedules=${seeds.length} seeds=${seeds[0]}..${seeds[seeds.length - 1]} ` +
        `divergences=${divergences} maxCatchUpMs=${maxCatchUpMs.toFixed(0)} ` +
        `faults=${JSON.stringify(totals)}`,
    );
    expect(divergences).toBe(0);
  });
});
