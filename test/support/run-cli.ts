/**
 * Runs the built `persist-pubsub` command (dist/, built by `npm test` or by `ensureBuilt`) as
 * a real child process: `runCli` to completion, `spawnCli` for long-running commands (`tail`)
 * with a line-by-line view of stdout.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** Builds dist/ if it is missing (a single `vitest run FILE` without `npm test`). */
export function ensureBuilt(): void {
  if (existsSync(CLI)) return;
  execFileSync(
    process.execPath,
    [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    { cwd: ROOT },
  );
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliRun {
  child: ChildProcess;
  /** Complete stdout lines so far. */
  lines: string[];
  stderr: () => string;
  exit: Promise<CliResult>;
  /** Resolves once `n` stdout lines have arrived (rejects if the process exits first). */
  waitForLines(n: number, timeoutMs?: number): Promise<string[]>;
}

export function spawnCli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; cli?: string } = {},
): CliRun {
  const child = spawn(process.execPath, [options.cli ?? CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
    cwd: options.cwd,
  });
  const lines: string[] = [];
  let all = '';
  let partial = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    all += chunk;
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    for (const w of waiters) w();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  const exit = new Promise<CliResult>((resolve) => {
    child.once('close', (code, signal) => {
      if (partial.length > 0) lines.push(partial);
      for (const w of waiters) w();
      resolve({ code, signal, stdout: all, stderr: err });
    });
  });
  let exited = false;
  void exit.then(() => {
    exited = true;
  });
  const waitForLines = (n: number, timeoutMs = 10_000) =>
    new Promise<string[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`only ${lines.length} of ${n} lines; stderr: ${err}`));
      }, timeoutMs);
      const check = () => {
        if (lines.length >= n) {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(lines.slice(0, n));
        } else if (exited) {
          clearTimeout(timer);
          waiters.delete(check);
          reject(new Error(`exited after ${lines.length} of ${n} lines; stderr: ${err}`));
        }
      };
      waiters.add(check);
      check();
    });
  return { child, lines, stderr: () => err, exit, waitForLines };
}

/**
 * Starts `persist-pubsub broker` on free loopback ports with JSON logs (plus `args`) and resolves
 * once its `broker listening` line names the bound addresses. The caller stops `run`.
 */
export async function spawnBroker(
  args: string[] = [],
  options: Parameters<typeof spawnCli>[1] = {},
): Promise<{ run: CliRun; grpc: string; admin: string }> {
  const run = spawnCli(
    [
      'broker',
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      '--log-format',
      'json',
      ...args,
    ],
    options,
  );
  try {
    for (let n = 1; ; n++) {
      const line = JSON.parse((await run.waitForLines(n))[n - 1] as string) as {
        msg?: string;
        grpc?: string;
        admin?: string;
      };
      if (line.msg === 'broker listening') {
        return { run, grpc: String(line.grpc), admin: String(line.admin) };
      }
    }
  } catch (err) {
    run.child.kill('SIGKILL');
    throw err;
  }
}

/** Runs a command to completion; kills it after `timeoutMs`. */
export async function runCli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; cli?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  const run = spawnCli(args, options);
  const timer = setTimeout(() => run.child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
  const result = await run.exit;
  clearTimeout(timer);
  return result;
}
