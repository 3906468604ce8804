/**
 * Several OS processes race compare-and-set appends on one key of one Consensus (a SQLite file,
 * Postgres, Redis): the result must be one gap-free history whose every version was committed
 * by exactly the process that claims it. The racers run built JS (`npm test` builds first).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { openConsensus } from '../src/consensus/index.js';
import { requireService, SERVICE_URLS } from './support/services.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const racer = join(root, 'test', 'fixtures', 'cas-racer.mjs');
const built = join(root, 'dist', 'src', 'consensus', 'index.js');

const PROCESSES = 4;
const COMMITS_EACH = 100;

interface RacerReport {
  pid: number;
  commits: string[];
  mismatches: number;
  retries: number;
}

function start(
  url: string,
  key: string,
): { child: ChildProcess; ready: Promise<void>; done: Promise<RacerReport> } {
  const child = spawn(process.execPath, [racer, url, key, String(COMMITS_EACH)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    if (stdout.startsWith('ready\n')) markReady();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const done = new Promise<RacerReport>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      if (code !== 0) {
        // Exit code 13: Node's event loop emptied while a top-level await was pending, i.e. a
        // Consensus call was waiting on nothing but unref'd handles.
        const hint = code === 13 ? ' (a call was left waiting on unref()d handles only)' : '';
        reject(
          new Error(`racer ${child.pid} exited ${code ?? signal}${hint}: ${stderr || stdout}`),
        );
        return;
      }
      resolve(JSON.parse(last) as RacerReport);
    });
  });
  // A racer that dies before `ready` must not leave the test waiting for it.
  done.catch(() => markReady());
  return { child, ready, done };
}

async function race(url: string): Promise<void> {
  if (!existsSync(built)) {
    throw new Error(`${built} is missing: run 'npm run build' (npm test does) first`);
  }
  const key = `multiprocess-${randomUUID()}`;
  const racers = Array.from({ length: PROCESSES }, () => start(url, key));
  try {
    await Promise.all(racers.map((r) => r.ready));
    for (const r of racers) r.child.stdin?.end('go\n');
    const reports = await Promise.all(racers.map((r) => r.done));

    const total = PROCESSES * COMMITS_EACH;
    const claimed = reports.flatMap((r) =>
      r.commits.map((s) => ({ seqno: BigInt(s), pid: r.pid })),
    );
    claimed.sort((a, b) => (a.seqno < b.seqno ? -1 : a.seqno > b.seqno ? 1 : 0));
    expect(claimed.map((c) => c.seqno)).toEqual(Array.from({ length: total }, (_, i) => BigInt(i)));

    const consensus = await openConsensus(url);
    try {
      const history = await consensus.scan(key, 0n, total + 10);
      expect(history.map((v) => v.seqno)).toEqual(claimed.map((c) => c.seqno));
      for (const [i, v] of history.entries()) {
        const writer = new TextDecoder().decode(v.data).split('/')[0];
        expect(writer, `seqno ${v.seqno}`).toBe(String(claimed[i]!.pid));
      }
    } finally {
      await consensus.close();
    }
    // They really raced: some compare-and-sets lost.
    const mismatches = reports.reduce((sum, r) => sum + r.mismatches, 0);
    expect(mismatches).toBeGreaterThan(0);
    console.log(
      `multiprocess ${url.split(':')[0]}: ${PROCESSES} processes, ${total} commits, ` +
        `${mismatches} lost races, ${reports.reduce((s, r) => s + r.retries, 0)} retried errors`,
    );
  } finally {
    for (const r of racers) if (r.child.exitCode === null) r.child.kill('SIGKILL');
  }
}

describe('several OS processes racing compare-and-set', () => {
  const dir = mkdtempSync(join(tmpdir(), 'persist-pubsub-multiprocess-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('on one SQLite file make one gap-free history', { timeout: 120_000 }, async () => {
    await race(`sqlite:${join(dir, 'consensus.db')}`);
  });
});

const pg = await requireService('postgres');
describe.skipIf(!pg)('several OS processes racing compare-and-set on Postgres', () => {
  it('make one gap-free history', { timeout: 120_000 }, async () => {
    await race(SERVICE_URLS.postgres);
  });
});

const redis = await requireService('redis');
describe.skipIf(!redis)('several OS processes racing compare-and-set on Redis', () => {
  it('make one gap-free history', { timeout: 120_000 }, async () => {
    await race(SERVICE_URLS.redis);
  });
});
