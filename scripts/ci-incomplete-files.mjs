#!/usr/bin/env node
/**
 * CI only (`.ci/run`), after a failed `npm test`: tells a test failure from a dead test worker.
 *
 * Vitest 4's forks pool reports a worker process that died as "Worker exited unexpectedly",
 * without its exit code, signal or file (vitest issues 10079, 10587), and the file it was
 * running is left in the JSON report with tests still 'pending'. This script reads the report
 * (`.tmp/vitest-report.json`) and the process-exit log that `.ci/run` records with strace, and:
 * - prints every file with a failed test and exits 1 if there is one (a real failure: no rerun);
 * - otherwise prints each file left incomplete, how every test worker that died abnormally died
 *   (exit code or signal, from the strace log), and writes the incomplete files' paths, one a
 *   line, to stdout's last lines after `INCOMPLETE:` for `.ci/run` to run again, once;
 * - exits 2 when the report is missing or names nothing wrong (the failure is elsewhere).
 *
 * Usage: node scripts/ci-incomplete-files.mjs REPORT.json [STRACE.log]
 */
import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';

const [reportPath, tracePath] = process.argv.slice(2);
if (!reportPath || !existsSync(reportPath)) {
  console.error(`ci-incomplete-files: no vitest report at ${reportPath ?? '(none given)'}`);
  process.exit(2);
}
const report = JSON.parse(readFileSync(reportPath, 'utf8'));
const failed = [];
const incomplete = [];
for (const file of report.testResults ?? []) {
  const states = (file.assertionResults ?? []).map((a) => a.status);
  const name = relative(process.cwd(), file.name);
  if (states.includes('failed') || (file.status === 'failed' && !states.includes('pending'))) {
    failed.push(name);
  } else if (states.includes('pending')) {
    incomplete.push(
      `${name} (${states.filter((s) => s === 'pending').length} of ${states.length} tests unfinished)`,
    );
  }
}
if (failed.length > 0) {
  console.error(
    `ci-incomplete-files: tests failed in ${failed.length} file(s): ${failed.join(', ')}`,
  );
  process.exit(1);
}
if (incomplete.length === 0) {
  console.error('ci-incomplete-files: no failed and no unfinished test in the report');
  process.exit(2);
}

console.log('==================== A TEST WORKER DIED ====================');
console.log('Unfinished files (their worker process ended while they ran):');
for (const f of incomplete) console.log(`  ${f}`);
if (tracePath && existsSync(tracePath)) {
  for (const l of workerDeaths(readFileSync(tracePath, 'utf8'))) console.log(l);
}
console.log('============================================================');
console.log('INCOMPLETE:');
for (const f of incomplete) console.log(f.replace(/ \(.*$/, ''));

/**
 * From `strace -f -e trace=execve,kill,tgkill,tkill` output: how each vitest worker process that
 * did not exit 0 ended, and every signal another process sent it.
 */
function workerDeaths(trace) {
  const lines = trace.split('\n');
  const workers = new Set();
  for (const l of lines) {
    const m = /^(\d+) +execve\(/.exec(l);
    if (m && /vitest/.test(l) && /forks/.test(l)) workers.add(m[1]);
  }
  // A worker stopped by vitest gets its SIGTERM after the pool stopped listening: that is no
  // death to report. One that died otherwise exited non-zero or by a signal vitest did not send.
  const ends = new Map();
  for (const l of lines) {
    const m = /^(\d+) +\+\+\+ (killed by \w+|exited with \d+)/.exec(l);
    if (m && workers.has(m[1])) ends.set(m[1], m[2]);
  }
  const abnormal = [...ends].filter(
    ([, how]) => how !== 'exited with 0' && how !== 'killed by SIGTERM',
  );
  const out = [
    `Vitest worker processes in the run: ${workers.size}; ended other than by exit 0 or vitest's SIGTERM: ${abnormal.length}`,
  ];
  for (const [pid, how] of abnormal) {
    out.push(`  worker ${pid}: ${how}`);
    for (const l of lines) {
      const target = /^\d+ +(?:kill|tkill|tgkill)\((\d+)/.exec(l)?.[1];
      if (target === pid && !/, 0\)/.test(l)) out.push(`    signal sent to it: ${l}`);
    }
  }
  return out;
}
