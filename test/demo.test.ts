/**
 * `persist-pubsub demo` (the README's `npm start`), run as the real built CLI: a short run ends
 * with exit 0, readers at the final head, zero errors, and pubsub-on latency well below
 * pubsub-off (polling) latency; the output is plain text when stdout is not a terminal; SIGINT
 * stops every child process and removes the temporary directory; a worker that dies makes
 * the demo fail (exit 1) without orphans; bad options name the flag. With the loopback
 * nats-server, short runs in `--pubsub nats://…` and `--pubsub bridged:nats://…` modes finish
 * the same way.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { requireService, SERVICE_URLS } from './support/services.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const children: ChildProcess[] = [];
const natsOk = await requireService('nats');

interface Run {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
}

function demo(args: string[]): Run {
  const child = spawn(process.execPath, [cli, 'demo', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    err += c;
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    out: () => out,
    err: () => err,
    exit,
    async waitFor(re, timeoutMs) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const m = out.match(re);
        if (m) return m;
        if (Date.now() > until || child.exitCode !== null) {
          throw new Error(`no ${re} in output:\n${out}\nstderr:\n${err}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function allGone(pids: number[], timeoutMs: number): Promise<number[]> {
  const until = Date.now() + timeoutMs;
  let left = pids.filter(alive);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    left = left.filter(alive);
  }
  return left;
}

/** The pids the demo prints in its first line: broker first, then the workers. */
function pidsOf(out: string): number[] {
  const broker = out.match(/broker \(pid (\d+)\)/);
  const workers = out.match(/\(pids ([\d ]+)\)/);
  if (!broker || !workers) throw new Error(`no pids in:\n${out}`);
  return [Number(broker[1]), ...(workers[1] ?? '').split(' ').map(Number)];
}

function phase(out: string, name: string) {
  const m = out.match(new RegExp(`^${name} +(\\d+)${' +([\\d.]+|-)'.repeat(6)}$`, 'm'));
  if (!m) throw new Error(`no summary row "${name}" in:\n${out}`);
  return {
    applied: Number(m[1]),
    commitMs: Number(m[2]),
    p50Ms: Number(m[3]),
    p99Ms: Number(m[4]),
    readsPerS: Number(m[5]),
    pollsPerS: Number(m[6]),
    writerReadsPerS: Number(m[7]),
  };
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

describe('persist-pubsub demo', () => {
  it('exists in the build (npm test builds first)', () => {
    expect(existsSync(cli)).toBe(true);
  });

  it('runs to a correct finish: exit 0, readers at head, no errors, pubsub far faster than polling', async () => {
    const run = demo([
      '--duration',
      '10',
      '--shards',
      '2',
      '--rate',
      '10',
      '--pubsub-off-at',
      '3',
      '--pubsub-off-for',
      '4',
    ]);
    const { code } = await run.exit;
    const out = run.out();
    expect(code, `${out}\n${run.err()}`).toBe(0);
    // Plain text for logs: no terminal escapes when stdout is a pipe.
    expect(out.includes(String.fromCharCode(27))).toBe(false);
    // The live table: one row per second, pubsub switched off and back on.
    const rows = out.match(/^ +\d+ +(on|off) +\d+ /gm) ?? [];
    expect(rows.length).toBe(10);
    expect(out).toContain('persist_pubsub_client_enabled = false (flags file)');
    expect(out).toContain('persist_pubsub_client_enabled = true (flags file)');
    expect(out).toMatch(/^ +6 +off +/m);
    expect(out).toMatch(/^ +10 +on +/m);

    const on = phase(out, 'pubsub on');
    const off = phase(out, 'pubsub off');
    const again = phase(out, 'pubsub on again');
    for (const p of [on, off, again]) expect(p.applied).toBeGreaterThan(10);
    // Polling: the first poll comes 1200 ms after a wait starts, so about 600 ms at the median.
    expect(off.p50Ms).toBeGreaterThan(200);
    expect(off.pollsPerS).toBeGreaterThan(0);
    // Pushed diffs: far below (on an idle machine about a millisecond).
    expect(on.p50Ms).toBeLessThan(off.p50Ms / 3);
    expect(again.p50Ms).toBeLessThan(off.p50Ms / 3);
    expect(again.pollsPerS).toBe(0);
    // Readers read Consensus far less with pubsub than while polling.
    expect(again.readsPerS).toBeLessThan(off.readsPerS);

    expect(out).toMatch(/^readers at the final head: 2\/2 /m);
    expect(out).toMatch(/^errors: 0$/m);
    expect(out).toMatch(/^result: OK$/m);
    const dir = out.match(/sqlite:(\S+)\/consensus\.db \(throwaway\)/)?.[1];
    expect(dir).toBeDefined();
    expect(existsSync(dir as string)).toBe(false);
    expect(await allGone(pidsOf(out), 2000)).toEqual([]);
  }, 90_000);

  it.skipIf(!natsOk).each([
    ['nats', SERVICE_URLS.nats, /clients on NATS \S+ directly, no broker/, 0],
    [
      'bridged',
      `bridged:${SERVICE_URLS.nats}`,
      /brokers bridged through NATS \S+: writers' broker/,
      2,
    ],
  ] as const)(
    'runs in --pubsub %s mode to a correct finish, pubsub far faster than polling',
    async (name, pubsub, banner, brokers) => {
      const run = demo([
        '--duration',
        '8',
        '--shards',
        '2',
        '--rate',
        '10',
        '--pubsub-off-at',
        '2',
        '--pubsub-off-for',
        '3',
        '--pubsub',
        pubsub,
      ]);
      const { code } = await run.exit;
      const out = run.out();
      expect(code, `${out}\n${run.err()}`).toBe(0);
      expect(out).toMatch(banner);
      expect(out).toMatch(new RegExp(`^pubsub: ${name} `, 'm'));
      const brokerPids = [...out.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1]));
      expect(brokerPids).toHaveLength(brokers);
      // Readers were connected (pushes, not polls) while pubsub was on.
      expect(out).toMatch(/^ +8 +on +.* 2\/2$/m);
      const on = phase(out, 'pubsub on');
      const off = phase(out, 'pubsub off');
      const again = phase(out, 'pubsub on again');
      for (const p of [on, off, again]) expect(p.applied).toBeGreaterThan(10);
      expect(off.p50Ms).toBeGreaterThan(200);
      expect(on.p50Ms).toBeLessThan(off.p50Ms / 3);
      expect(again.p50Ms).toBeLessThan(off.p50Ms / 3);
      expect(again.pollsPerS).toBe(0);
      expect(out).toMatch(/^readers at the final head: 2\/2 /m);
      expect(out).toMatch(/^errors: 0$/m);
      expect(out).toMatch(/^result: OK$/m);
      const workers =
        out
          .match(/\(pids ([\d ]+)\)/)?.[1]
          ?.split(' ')
          .map(Number) ?? [];
      expect(workers).toHaveLength(4);
      expect(await allGone([...brokerPids, ...workers], 3000)).toEqual([]);
    },
    90_000,
  );

  it('SIGINT stops every child process, removes its directory and exits 130', async () => {
    const run = demo(['--duration', '120']);
    await run.waitFor(/^ +2 +on /m, 40_000);
    const pids = pidsOf(run.out());
    expect(pids).toHaveLength(5);
    for (const pid of pids) expect(alive(pid)).toBe(true);
    const dir = run.out().match(/sqlite:(\S+)\/consensus\.db/)?.[1] as string;
    expect(existsSync(dir)).toBe(true);
    run.child.kill('SIGINT');
    const { code } = await run.exit;
    expect(code, run.out()).toBe(130);
    expect(await allGone(pids, 3000)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
  }, 90_000);

  it('fails (exit 1) when a worker dies, and leaves no process behind', async () => {
    const run = demo(['--duration', '120', '--pubsub-off-for', '0']);
    await run.waitFor(/^ +2 +on /m, 40_000);
    const pids = pidsOf(run.out());
    const reader = pids[1] as number;
    process.kill(reader, 'SIGKILL');
    const { code } = await run.exit;
    expect(code).toBe(1);
    expect(`${run.out()}${run.err()}`).toMatch(/reader-1 exited during the run \(SIGKILL\)/);
    expect(await allGone(pids, 3000)).toEqual([]);
  }, 90_000);

  it.each([
    [['--shards', '0'], /--shards must be a number from 1 to 1000/],
    [['--rate', 'fast'], /--rate must be a number/],
    [
      ['--duration', '5', '--pubsub-off-at', '3', '--pubsub-off-for', '4'],
      /--pubsub-off-at plus --pubsub-off-for/,
    ],
    [['--consensus', 'mem:'], /--consensus must be shared between processes/],
    [['--pubsub', 'grpc://127.0.0.1:1'], /--pubsub must be broker, nats:\/\/HOST:PORT or bridged:/],
  ])('rejects %j naming the flag', async (args, message) => {
    const run = demo(args as string[]);
    const { code } = await run.exit;
    expect(code).toBe(1);
    expect(run.err()).toMatch(message);
    expect(run.out()).toBe('');
  });
});
