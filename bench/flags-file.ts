/**
 * `npm run bench -- flags-file [--quick] [--seconds 10] [--intervals 25,50,100]`
 *
 * What the flags-file watcher (src/util/flags-file.ts: a `stat` poll) costs an otherwise idle
 * process: CPU (user + system, `process.cpuUsage`) per second of wall time with no watcher, then
 * with one watcher per poll interval, on a file that does not change. Prints the load average,
 * since on a shared machine each timer wake-up costs more than the stat itself.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sleep, watchFlagsFileContent } from '../src/util/index.js';

export const flagsFileBench = {
  description: 'idle CPU of the flags-file stat poll, by poll interval',
  run,
};

async function idleCpu(seconds: number, intervalMs: number | undefined, path: string) {
  const watcher =
    intervalMs === undefined
      ? undefined
      : watchFlagsFileContent({
          path,
          initialText: '{}',
          onChange: () => {},
          pollIntervalMs: intervalMs,
        });
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  await sleep(seconds * 1000);
  const cpu = process.cpuUsage(cpu0);
  const wallMs = performance.now() - wall0;
  watcher?.close();
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const polls = intervalMs === undefined ? 0 : Math.floor(wallMs / intervalMs);
  return { cpuMs, wallMs, polls };
}

async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      seconds: { type: 'string' },
      intervals: { type: 'string', default: '25,50,100' },
    },
  });
  const seconds = Number(values.seconds ?? (values.quick ? '2' : '10'));
  const intervals = values.intervals.split(',').map(Number);
  if (!(seconds > 0) || intervals.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error('--seconds must be > 0 and --intervals integers >= 1');
  }
  const dir = mkdtempSync(join(tmpdir(), 'bench-flags-'));
  const path = join(dir, 'flags.json');
  writeFileSync(path, '{}');
  try {
    console.log(
      `load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    console.log('| poll interval | CPU % of one core | CPU µs per poll (incl. timer wake) |');
    console.log('|---|---|---|');
    for (const intervalMs of [undefined, ...intervals]) {
      const r = await idleCpu(seconds, intervalMs, path);
      const pct = ((r.cpuMs / r.wallMs) * 100).toFixed(3);
      const perPoll = r.polls === 0 ? '–' : ((r.cpuMs * 1000) / r.polls).toFixed(1);
      console.log(
        `| ${intervalMs === undefined ? 'none' : `${intervalMs} ms`} | ${pct} | ${perPoll} |`,
      );
    }
    console.log(
      `load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
