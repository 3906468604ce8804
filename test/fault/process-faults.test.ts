/**
 * Process faults mid-traffic, under the checker (states = fold of the Consensus log, seqnos
 * strictly increase, everyone at the head afterwards, no unhandled error in any process):
 * - the broker process is killed with SIGKILL and restarted on the same port;
 * - a private redis-server (AOF, fsync always) is killed with SIGKILL and restarted;
 * - Postgres: every connection of this suite is terminated (`pg_terminate_backend`) on the shared
 *   server, twice; and a private cluster (`initdb` + `pg_ctl` on a free port, as the postgres
 *   user) is restarted for real (`pg_ctl restart -m immediate`) mid-traffic.
 * Runs the built CLI: `npx tsc -p tsconfig.build.json` first (`npm test` does).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../../src/broker/index.js';
import { type Consensus, openConsensus } from '../../src/consensus/index.js';
import { runTraffic } from '../support/fault-traffic.js';
import { POSTGRES_INITDB, REDIS_BINARIES, requirePrerequisite } from '../support/prerequisites.js';
import { requireService, SERVICE_URLS, tcpReachable } from '../support/services.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const BUILT = existsSync(CLI);
const shard = () => `s${randomUUID()}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Generous: a reconnect backoff, a poll and a Consensus reconnect on a loaded 2-core box. */
const CATCH_UP_BOUND_MS = 20_000;
const pgUp = await requireService('postgres');

/** The uid/gid of the postgres user, if initdb can run as it here. */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (!requirePrerequisite(POSTGRES_INITDB)) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}
const pgUser = postgresUser();

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function waitReachable(port: number, up: boolean, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await tcpReachable('127.0.0.1', port, 500)) !== up) {
    if (Date.now() > deadline) throw new Error(`port ${port} not ${up ? 'up' : 'down'}`);
    await sleep(50);
  }
}

interface Child {
  proc: ChildProcess;
  stderr: string[];
  exited: Promise<number | null>;
}

function spawnChild(cmd: string, args: string[]): Child {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  createInterface({ input: proc.stderr! }).on('line', (l) => stderr.push(l));
  proc.stdout?.resume();
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return { proc, stderr, exited };
}

const crashLines = (c: Child) =>
  c.stderr.filter((l) => /unhandled|uncaught|TypeError|RangeError|FATAL/i.test(l));

describe.skipIf(!BUILT)('broker process: SIGKILL and restart mid-traffic', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'fault-broker-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('every reader stays correct and reaches the head', async () => {
    const port = await freePort();
    const start = () =>
      spawnChild(process.execPath, [
        CLI,
        'broker',
        '--listen',
        `127.0.0.1:${port}`,
        '--admin-listen',
        '127.0.0.1:0',
        '--log-format',
        'json',
      ]);
    const first = start();
    const children = [first];
    await waitReachable(port, true);
    const url = `sqlite:${join(dir, 'c.db')}`;
    const check = await openConsensus(url);
    try {
      const r = await runTraffic({
        consensusUrl: url,
        checkConsensus: check,
        pubsub: `grpc://127.0.0.1:${port}`,
        shardId: shard(),
        writers: 2,
        readers: 2,
        versionsPerWriter: 30,
        intervalMs: 10,
        catchUpBoundMs: CATCH_UP_BOUND_MS,
        async midway() {
          first.proc.kill('SIGKILL');
          expect(await first.exited).toBe(null);
          await sleep(300);
          const second = start();
          children.push(second);
          await waitReachable(port, true);
        },
      });
      console.log(`[faults] broker kill -9: ${JSON.stringify(r)}`);
      expect(r.divergences).toEqual([]);
      expect(r.processErrors).toEqual([]);
      expect(r.commits).toBeGreaterThanOrEqual(60);
      expect(r.commitsAtFaultEnd).toBeLessThan(r.commits); // the fault landed mid-traffic
      const second = children[1] as Child;
      second.proc.kill('SIGTERM');
      expect(await second.exited).toBe(0);
      for (const c of children) expect(crashLines(c)).toEqual([]);
    } finally {
      for (const c of children) c.proc.kill('SIGKILL');
      await check.close();
    }
  }, 90_000);
});

describe('Consensus restarts mid-traffic', () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = createBroker({ listen: { host: '127.0.0.1', port: 0 } });
    await broker.start();
  });
  afterAll(() => broker.destroy());

  /**
   * The checker's traffic over Consensus `url` through the broker, with `midway` as the fault:
   * its report logged under `label()` and asserted (no divergence, no process error, the
   * commits made, the fault landed mid-traffic).
   */
  async function trafficThroughFault(
    url: string,
    check: Consensus,
    midway: () => Promise<void>,
    label: () => string,
  ): Promise<void> {
    const r = await runTraffic({
      consensusUrl: url,
      checkConsensus: check,
      pubsub: `grpc://127.0.0.1:${broker.address.port}`,
      shardId: shard(),
      writers: 2,
      readers: 2,
      versionsPerWriter: 25,
      intervalMs: 10,
      catchUpBoundMs: CATCH_UP_BOUND_MS,
      midway,
    });
    console.log(`[faults] ${label()}${JSON.stringify(r)}`);
    expect(r.divergences).toEqual([]);
    expect(r.processErrors).toEqual([]);
    expect(r.commits).toBeGreaterThanOrEqual(50);
    expect(r.commitsAtFaultEnd).toBeLessThan(r.commits); // the fault landed mid-traffic
  }

  it.skipIf(!requirePrerequisite(REDIS_BINARIES))(
    'a private redis-server killed with SIGKILL and restarted (AOF, fsync always)',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'fault-redis-'));
      const port = await freePort();
      const start = () =>
        spawnChild('redis-server', [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'yes',
          '--appendfsync',
          'always',
          '--dir',
          dir,
        ]);
      const children = [start()];
      await waitReachable(port, true);
      const url = `redis://127.0.0.1:${port}`;
      const check = await openConsensus(url);
      try {
        await trafficThroughFault(
          url,
          check,
          async () => {
            const first = children[0] as Child;
            first.proc.kill('SIGKILL');
            await first.exited;
            await waitReachable(port, false);
            await sleep(400);
            children.push(start());
            await waitReachable(port, true);
          },
          () => 'redis kill -9: ',
        );
      } finally {
        await check.close();
        for (const c of children) c.proc.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      }
    },
    90_000,
  );

  it.skipIf(!pgUp)(
    'Postgres: every connection of this suite terminated, twice',
    async () => {
      const app = `fault_${randomUUID().slice(0, 8)}`;
      const base = SERVICE_URLS.postgres;
      const url = `${base}${base.includes('?') ? '&' : '?'}application_name=${app}`;
      const check: Consensus = await openConsensus(url);
      const admin = new pg.Client({ connectionString: base });
      await admin.connect();
      let terminated = 0;
      try {
        await trafficThroughFault(
          url,
          check,
          async () => {
            for (let k = 0; k < 2; k++) {
              const res = await admin.query(
                'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1',
                [app],
              );
              terminated += res.rows.filter((x: { ok: boolean }) => x.ok).length;
              await sleep(150);
            }
          },
          () => `postgres terminate: terminated=${terminated} `,
        );
        expect(terminated).toBeGreaterThan(0);
      } finally {
        await admin.end();
        await check.close();
      }
    },
    90_000,
  );

  it.skipIf(pgUser === undefined)(
    'a private Postgres cluster restarted (pg_ctl restart -m immediate)',
    async () => {
      const user = pgUser as { uid: number; gid: number };
      const dir = mkdtempSync(join(tmpdir(), 'fault-pg-'));
      chownSync(dir, user.uid, user.gid);
      const data = join(dir, 'data');
      const port = await freePort();
      const asPg = (...args: string[]) =>
        execFileSync('runuser', ['-u', 'postgres', '--', ...args], {
          stdio: 'pipe',
          timeout: 60_000,
        });
      asPg('initdb', '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync');
      const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
      asPg('pg_ctl', '-D', data, '-o', opts, '-l', join(dir, 'log'), '-w', '-t', '60', 'start');
      const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
      const check = await openConsensus(url);
      try {
        await trafficThroughFault(
          url,
          check,
          async () => {
            await new Promise<void>((resolve, reject) => {
              const p = spawn(
                'runuser',
                [
                  '-u',
                  'postgres',
                  '--',
                  'pg_ctl',
                  '-D',
                  data,
                  '-m',
                  'immediate',
                  '-w',
                  '-t',
                  '60',
                  'restart',
                ],
                { stdio: 'ignore' },
              );
              p.on('exit', (code) =>
                code === 0 ? resolve() : reject(new Error(`pg_ctl restart exited ${code}`)),
              );
            });
          },
          () => 'private postgres restart: ',
        );
      } finally {
        await check.close();
        try {
          asPg('pg_ctl', '-D', data, '-m', 'immediate', '-w', 'stop');
        } catch {
          // already down
        }
        rmSync(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
