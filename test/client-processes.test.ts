/**
 * A writer and a reader as two OS processes on one SQLite file, with the broker in this
 * process: the reader sees every commit through pubsub (and reads Consensus only to open and
 * catch up), and through polling alone once `PERSIST_PUBSUB_CLIENT_ENABLED=false`. Prints the
 * commit → observed latency (p50/p99) and the reader's Consensus reads in each mode.
 * Runs the built JS: `npx tsc -p tsconfig.build.json` first (`npm test` does).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../src/broker/index.js';

const ROOT = join(import.meta.dirname, '..');
const FIXTURES = join(ROOT, 'test', 'fixtures');
const BUILT = existsSync(join(ROOT, 'dist', 'src', 'index.js'));
const N = 60;
const INTERVAL_MS = 25;

interface Proc {
  lines: AsyncIterator<string>;
  done: Promise<number | null>;
  kill(): void;
}

function run(script: string, args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [join(FIXTURES, script), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const done = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { lines, done, kill: () => child.kill('SIGKILL') };
}

/** What `client-reader.mjs` prints when done. */
interface ReaderResult {
  latenciesMs: number[];
  reads: number;
  readsFollowing: number;
  n: number;
  finalN: number;
  readReasons: Record<string, number>;
  transport: string;
  e2eCount: Record<string, number>;
}

async function line(p: Proc): Promise<Record<string, unknown>> {
  const r = await p.lines.next();
  if (r.done) throw new Error('process ended without output');
  return JSON.parse(r.value) as Record<string, unknown>;
}

const shardOf = (name: string) => `s00000000-0000-0000-0000-${name.padStart(12, '0')}`;

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length - 1) * p))] ?? Number.NaN;
};

describe.skipIf(!BUILT)('writer and reader processes on a shared SQLite file', () => {
  let dir: string;
  let broker: Broker;
  let url: string;
  const procs: Proc[] = [];
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'client-procs-'));
    broker = createBroker({ listen: { host: '127.0.0.1', port: 0 } });
    await broker.start();
    url = `grpc://127.0.0.1:${broker.address.port}`;
  });
  afterAll(async () => {
    for (const p of procs) p.kill();
    broker?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  async function scenario(
    name: string,
    pubsubOn: boolean,
    extra: { env?: Record<string, string>; flagsFile?: string; during?: () => Promise<void> } = {},
  ) {
    const consensus = `sqlite:${join(dir, `${name}.db`)}`;
    const shard = shardOf(name);
    const env = { ...(pubsubOn ? {} : { PERSIST_PUBSUB_CLIENT_ENABLED: 'false' }), ...extra.env };
    const args = [consensus, url, shard, String(N)];
    if (extra.flagsFile !== undefined) args.push(extra.flagsFile);
    const reader = run('client-reader.mjs', args, env);
    procs.push(reader);
    expect(await line(reader)).toEqual({ ready: true });
    const writer = run(
      'client-writer.mjs',
      [consensus, url, shard, String(N), String(INTERVAL_MS)],
      {},
    );
    procs.push(writer);
    await extra.during?.();
    expect(await line(writer)).toMatchObject({ committed: N });
    const result = (await line(reader)) as unknown as ReaderResult;
    expect(await reader.done).toBe(0);
    expect(await writer.done).toBe(0);
    const lat = result.latenciesMs;
    console.log(
      `client processes, ${name}: ${N} commits every ${INTERVAL_MS} ms; ` +
        `${lat.length} commits observed, commit→observed p50 ${pct(lat, 0.5).toFixed(2)} ms, ` +
        `p99 ${pct(lat, 0.99).toFixed(2)} ms, max ${Math.max(...lat).toFixed(2)} ms; ` +
        `reader Consensus reads since ready ${result.reads}, since the first commit seen ${result.readsFollowing}; e2e histogram counts ${JSON.stringify(result.e2eCount)}; reads by reason since start ${JSON.stringify(result.readReasons)}`,
    );
    return { ...result, lat };
  }

  it('pubsub on: the reader sees every commit through pubsub with almost no Consensus reads', async () => {
    const r = await scenario('on', true);
    expect(r.finalN).toBe(N);
    expect(r.lat).toHaveLength(N);
    // Idle polls before the writer's first commit are the schedule's; once commits flow,
    // pubsub carries every one of them.
    expect(r.readsFollowing).toBe(0);
    // Polling alone would put the median near 600 ms (first sleep 1200 ms); pubsub is a few ms.
    // The bound tells the two apart with room for a loaded CI machine.
    expect(pct(r.lat, 0.5)).toBeLessThan(300);
    expect(r.e2eCount).toMatchObject({ pubsub: N });
  });

  it('pubsub off by flag (environment): the reader still sees every commit, by polling', async () => {
    const r = await scenario('off', false);
    expect(r.finalN).toBe(N);
    expect(r.lat).toHaveLength(N);
    expect(r.reads).toBeGreaterThan(0);
    expect(r.e2eCount).not.toHaveProperty('pubsub');
    // The first poll sleeps 1200 ms: polling is visibly slower than pubsub.
    expect(pct(r.lat, 0.5)).toBeGreaterThan(100);
  });

  it('the flags file switches pubsub off and on mid-run: polling, then catch-up and pubsub again', async () => {
    const flagsFile = join(dir, 'reader-flags.json');
    writeFileSync(flagsFile, '{}');
    const r = await scenario('toggled', true, {
      flagsFile,
      env: { PERSIST_NEXT_LISTEN_BATCH_RETRYER_FIXED_SLEEP_MS: '100' },
      during: async () => {
        // The broker sees every push: switch the reader off after 10 commits, on after 30.
        const shard = shardOf('toggled');
        const pushed = () =>
          Number(
            broker.listShards({ pageSize: 1000 }).items.find((x) => x.shardId === shard)
              ?.lastSeqno ?? 0,
          );
        const reach = async (n: number) => {
          while (pushed() < n) await new Promise((resolve) => setTimeout(resolve, 2));
        };
        await reach(10);
        writeFileSync(flagsFile, JSON.stringify({ persist_pubsub_client_enabled: false }));
        await reach(30);
        writeFileSync(flagsFile, '{}');
      },
    });
    expect(r.finalN).toBe(N);
    expect(r.lat).toHaveLength(N);
    const reasons = r.readReasons;
    const e2e = r.e2eCount;
    expect(reasons.poll).toBeGreaterThan(0);
    // The first connection and the one after re-enabling each caught the shard up once.
    expect(reasons.reconnect).toBe(2);
    expect(e2e.pubsub).toBeGreaterThan(0);
    expect(e2e.poll).toBeGreaterThan(0);
  });
});
