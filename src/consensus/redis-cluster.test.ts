/**
 * The Redis backend against a real 3-primary Redis Cluster, started here from the local
 * `redis-server` binary on free loopback ports (and stopped after). Without the binaries it is
 * skipped loudly, and fails under CI=true (`test/support/prerequisites.ts`).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_BINARIES, requirePrerequisite } from '../../test/support/prerequisites.js';
import { describeConformance } from './conformance.test-suite.js';
import { ConsensusError } from './errors.js';
import { openRedisConsensus, redisKeys } from './redis.js';

const haveBinaries = requirePrerequisite(REDIS_BINARIES);

const run = promisify(execFile);

/** `n` distinct free loopback ports (held open together so none repeats; then released). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

describe.skipIf(!haveBinaries)('redis consensus on a 3-primary cluster', () => {
  const PREFIX = `pp-cluster-${randomUUID().slice(0, 8)}:`;
  const processes: ChildProcess[] = [];
  let dir = '';
  let ports: number[] = [];
  let url = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'persist-pubsub-redis-cluster-'));
    ports = await freePorts(3);
    for (const port of ports) {
      const child = spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${port}.conf`,
          '--dir',
          dir,
          '--save',
          '',
          '--appendonly',
          'no',
        ],
        { stdio: 'ignore' },
      );
      processes.push(child);
    }
    // Wait for every node to answer, then join them and wait for the cluster to be ok.
    for (const port of ports) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          await run('redis-cli', ['-p', String(port), 'ping']);
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
    await run('redis-cli', [
      '--cluster',
      'create',
      ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    for (const port of ports) {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const { stdout } = await run('redis-cli', ['-p', String(port), 'cluster', 'info']);
        if (stdout.includes('cluster_state:ok')) break;
        if (Date.now() > deadline) throw new Error(`cluster on ${port} not ok: ${stdout}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    url = `redis://127.0.0.1:${ports[0]}?cluster=1`;
  }, 60_000);

  afterAll(() => {
    for (const child of processes) child.kill('SIGKILL');
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  describeConformance('redis cluster', () => openRedisConsensus(url, { keyPrefix: PREFIX }));

  it('keeps a shard in one slot and lists keys from every primary', async () => {
    const c = await openRedisConsensus(url, { keyPrefix: `${PREFIX}spread:` });
    const probe = new Cluster([{ host: '127.0.0.1', port: ports[0]! }]);
    try {
      const shards = Array.from({ length: 60 }, (_, i) => `{shard}-${i}}`);
      for (const s of shards) {
        expect(await c.compareAndSet(s, null, { seqno: 1n, data: new Uint8Array([1]) })).toBe(
          'committed',
        );
      }
      const slots = new Set<number>();
      for (const s of shards) {
        const { log, head } = redisKeys(`${PREFIX}spread:`, s);
        const [a, b] = await Promise.all([
          probe.call('CLUSTER', 'KEYSLOT', log),
          probe.call('CLUSTER', 'KEYSLOT', head),
        ]);
        expect(a).toBe(b);
        slots.add(Number(a));
      }
      // 60 shards over 16384 slots and 3 primaries: they are spread, not on one node.
      const owners = new Set<number>();
      for (const port of ports) {
        const { stdout } = await run('redis-cli', [
          '-p',
          String(port),
          '--scan',
          '--pattern',
          `${PREFIX}spread:*:head`,
        ]);
        if (stdout.trim() !== '') owners.add(port);
      }
      expect(owners.size).toBe(3);
      const seen = new Set<string>();
      let pageToken: string | undefined;
      do {
        const page = await c.listKeys({ pageSize: 7, pageToken });
        expect(page.keys.length).toBeLessThanOrEqual(7);
        for (const k of page.keys) seen.add(k);
        pageToken = page.nextPageToken;
      } while (pageToken !== undefined);
      expect([...seen].sort()).toEqual([...shards].sort());
    } finally {
      await c.close();
      probe.disconnect();
    }
  });

  it('reports a CAS whose node connection is killed in flight as indeterminate, not resent', async () => {
    const name = `cluster-kill-${randomUUID().slice(0, 8)}`;
    const c = await openRedisConsensus(url, { keyPrefix: PREFIX, connectionName: name });
    const probe = new Cluster([{ host: '127.0.0.1', port: ports[0]! }]);
    const key = `kill-${randomUUID()}`;
    let owner: Redis | undefined;
    try {
      const slot = Number(await probe.call('CLUSTER', 'KEYSLOT', redisKeys(PREFIX, key).log));
      const ranges = (await probe.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
      const range = ranges.find(([from, to]) => from <= slot && slot <= to);
      owner = new Redis({ host: '127.0.0.1', port: Number(range?.[2][1]) });
      await owner.call('CLIENT', 'PAUSE', '3000', 'WRITE');
      try {
        const cas = c.compareAndSet(key, null, { seqno: 0n, data: new Uint8Array([1]) }).then(
          () => expect.fail('the CAS resolved'),
          (err: unknown) => err,
        );
        let id: string | undefined;
        const deadline = Date.now() + 2000;
        while (id === undefined && Date.now() < deadline) {
          const list = String(await owner.call('CLIENT', 'LIST'));
          const line = list
            .split('\n')
            .find((l) => l.includes(` name=${name} `) && / flags=\w*b/.test(l));
          id = line === undefined ? undefined : /^id=(\d+)/.exec(line)?.[1];
          if (id === undefined) await new Promise((r) => setTimeout(r, 10));
        }
        expect(id).toBeDefined();
        await owner.call('CLIENT', 'KILL', 'ID', id!);
        const err = await cas;
        expect(err).toBeInstanceOf(ConsensusError);
        expect((err as ConsensusError).code).toBe('indeterminate');
      } finally {
        await owner.call('CLIENT', 'UNPAUSE');
      }
      // The killed CAS never ran; the client finds the node again and the key is still free.
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          expect(await c.head(key)).toBeUndefined();
          break;
        } catch (err) {
          expect((err as ConsensusError).determinate).toBe(true);
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      expect(await c.compareAndSet(key, null, { seqno: 0n, data: new Uint8Array([2]) })).toBe(
        'committed',
      );
    } finally {
      await c.close();
      probe.disconnect();
      owner?.disconnect();
    }
  });
});
