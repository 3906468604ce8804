#!/usr/bin/env node
// The long fault run: ≥ 1000 randomized schedules (see test/fault/schedules.test.ts).
//   node scripts/faults-long.mjs [SCHEDULES] [BASE_SEED]
// Defaults: 1000 schedules from a random base seed (printed). A failing schedule prints
// FAULT_SEED=<seed>; replay it with `FAULT_SEED=<seed> npx vitest run test/fault/schedules`.
// Ends with the suite's summary line: schedules, divergences, longest catch-up, faults injected.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const count = Number(process.argv[2] ?? 1000);
const base = Number(process.argv[3] ?? Math.floor(Math.random() * 2 ** 31));
if (!Number.isSafeInteger(count) || count < 1) {
  console.error(`schedules must be a positive integer, not ${process.argv[2]}`);
  process.exit(2);
}
if (!Number.isSafeInteger(base) || base < 0) {
  console.error(`base seed must be a non-negative integer, not ${process.argv[3]}`);
  process.exit(2);
}
console.log(`faults-long: ${count} schedules from FAULT_BASE_SEED=${base}`);
const t0 = Date.now();
const child = spawn(
  process.execPath,
  [
    join(root, 'node_modules', 'vitest', 'vitest.mjs'),
    'run',
    'test/fault/schedules.test.ts',
    '--reporter=dot',
  ],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, FAULT_SCHEDULES: String(count), FAULT_BASE_SEED: String(base) },
  },
);
child.on('exit', (code, signal) => {
  console.log(
    `faults-long: done in ${((Date.now() - t0) / 1000).toFixed(0)} s, exit ${code ?? signal}`,
  );
  process.exit(code ?? 1);
});
