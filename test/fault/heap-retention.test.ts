/**
 * Load: many updates must not retain memory. Found by the soak (retained heap grew ~1 KB per
 * update): `AbortSignal.any` with a handle's long-lived closing signal kept every composite
 * alive on Node 20 (nodejs/node#55351). Measured in a child process with `--expose-gc` so the
 * figure is the heap that survives a full GC.
 * Runs the built JS: `npx tsc -p tsconfig.build.json` first (`npm test` does).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const BUILT = existsSync(join(ROOT, 'dist', 'src', 'index.js'));
const PROBE = join(import.meta.dirname, 'fixtures', 'heap-probe.mjs');

describe.skipIf(!BUILT)('retained heap under sustained updates', () => {
  it('stays flat: well under 100 bytes per update over 25,600 updates', () => {
    const out = execFileSync(process.execPath, ['--expose-gc', PROBE, '64', '400'], {
      encoding: 'utf8',
      timeout: 240_000,
    });
    const r = JSON.parse(out.trim()) as { updates: number; retainedBytes: number };
    const perUpdate = r.retainedBytes / r.updates;
    console.log(
      `[load] ${r.updates} updates retained ${(r.retainedBytes / 2 ** 20).toFixed(2)} MiB ` +
        `(${perUpdate.toFixed(1)} bytes/update)`,
    );
    // The leak was ~1000 bytes per update (25 MiB here); noise is well under 3 MiB.
    expect(r.retainedBytes).toBeLessThan(3 * 2 ** 20);
  }, 300_000);
});
