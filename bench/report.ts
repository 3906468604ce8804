/**
 * Benchmark results: each benchmark writes its JSON to `bench/results/` (`bench/results/quick/`
 * for `--quick` runs, so a smoke run never overwrites the real figures) and then the Markdown
 * report `REPORT.md` with its SVG charts is regenerated from whatever JSON files are there.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { here } from './e2e-child.js';

export interface BenchRun {
  kind: string;
  /**
   * The results file's name without `.json`: the kind, or `<kind>-<variant>` for an extra run
   * of a benchmark with other settings (reported in a section of its own).
   */
  file?: string | undefined;
  startedAt: string;
  quick: boolean;
  /** 1, 5 and 15 minute load averages before and after the run. */
  loadAverageBefore: string;
  loadAverageAfter: string;
  host: HostInfo | undefined;
}

export interface HostInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
}

export function hostInfo(): HostInfo {
  const c = cpus();
  return {
    cpus: c.length,
    cpuModel: c[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    node: process.version,
  };
}

/** `bench/results` (or its `quick/` folder) in the source tree, from `dist/bench/`. */
export function resultsDir(quick: boolean): string {
  const base = here('../../bench/results');
  return quick ? join(base, 'quick') : base;
}

export function readResult<T>(dir: string, kind: string): T | undefined {
  const file = join(dir, `${kind}.json`);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/** Writes `<kind>.json` and regenerates the report of that folder; returns the JSON's path. */
export async function writeResult(result: BenchRun): Promise<string> {
  const dir = resultsDir(result.quick);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${result.file ?? result.kind}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ ...result, host: result.host ?? hostInfo() }, null, 2)}\n`,
  );
  const { writeReport } = await import('./report-markdown.js');
  await writeReport(dir);
  return file;
}
