import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { setProcessSched } from './e2e-child.js';

/** The scheduling policy of every thread of a process (`/proc/<pid>/task/<tid>/stat` field 41). */
function policies(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start past the last ')': field 3 on.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[38]);
  });
}

const SCHED_OTHER = 0;
const SCHED_BATCH = 3;

describe('setProcessSched', () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    child?.kill('SIGKILL');
    child = undefined;
  });

  /** A Node process with its V8 and libuv threads up (it prints once it is running). */
  async function startNode(): Promise<number> {
    child = spawn(process.execPath, ['-e', 'console.log("up"); setInterval(() => {}, 1000)'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    await new Promise((resolve) => child?.stdout?.once('data', resolve));
    return child.pid ?? 0;
  }

  it('puts every thread of a running process at SCHED_BATCH', async () => {
    const pid = await startNode();
    expect(policies(pid).length).toBeGreaterThan(1);
    expect(new Set(policies(pid))).toEqual(new Set([SCHED_OTHER]));
    setProcessSched(pid, 'batch');
    expect(new Set(policies(pid))).toEqual(new Set([SCHED_BATCH]));
  });

  it('leaves the process as it is with other', async () => {
    const pid = await startNode();
    setProcessSched(pid, 'other');
    expect(new Set(policies(pid))).toEqual(new Set([SCHED_OTHER]));
  });
});
