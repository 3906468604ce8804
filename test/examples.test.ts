/**
 * Every example under `examples/` runs here as a real process (built JS: `npm test` builds
 * first): the writer and the materialized-view reader against the real broker command, the
 * process hosting the broker in-process, and the TLS + token clients against a broker started
 * with a throwaway CA, certificate and token (made with `openssl`), including a wrong token.
 * The Kubernetes manifests have their own test beside them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestPki } from './support/test-pki.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const example = (name: string) => join(root, 'dist', 'examples', `${name}.js`);
const dir = mkdtempSync(join(tmpdir(), 'pp-examples-'));
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

interface Proc {
  child: ChildProcess;
  /** The next stdout line parsed as JSON. */
  line(): Promise<Record<string, unknown>>;
  /** Every stdout line (JSON) until exit, and the exit code. */
  rest(): Promise<{ lines: Record<string, unknown>[]; code: number | null; stderr: string }>;
}

function run(script: string, args: string[]): Proc {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const it = createInterface({ input: child.stdout as NodeJS.ReadableStream })[
    Symbol.asyncIterator
  ]();
  return {
    child,
    async line() {
      const next = await it.next();
      if (next.done) throw new Error(`${script} ended early: ${stderr}`);
      return JSON.parse(next.value) as Record<string, unknown>;
    },
    async rest() {
      const lines: Record<string, unknown>[] = [];
      for (;;) {
        const next = await it.next();
        if (next.done) break;
        lines.push(JSON.parse(next.value) as Record<string, unknown>);
      }
      return { lines, code: await exited, stderr };
    },
  };
}

/** The real broker command on free ports; resolves with its gRPC address once listening. */
async function broker(
  args: string[] = [],
): Promise<{ grpc: string; stop: () => Promise<number | null> }> {
  const p = run(cli, [
    'broker',
    '--listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
    '--log-format',
    'json',
    ...args,
  ]);
  for (;;) {
    const l = await p.line();
    if (l.msg === 'broker listening') {
      const exited = new Promise<number | null>((r) => p.child.once('exit', (code) => r(code)));
      return {
        grpc: l.grpc as string,
        stop: async () => {
          p.child.kill('SIGTERM');
          return exited;
        },
      };
    }
  }
}

describe('examples', () => {
  it('writer.ts and reader.ts: the reader follows the writer through the broker', async () => {
    const b = await broker();
    const common = [
      '--consensus',
      `sqlite:${join(dir, 'view.db')}`,
      '--pubsub',
      `grpc://${b.grpc}`,
      '--shard',
      `s${randomUUID()}`,
    ];
    const reader = run(example('reader'), [
      ...common,
      '--until-upper',
      '20',
      '--timeout-ms',
      '30000',
    ]);
    // The view at open: nothing yet.
    expect(await reader.line()).toEqual({ seqno: '0', upper: '0', batches: 0, rows: '0' });
    const writer = run(example('writer'), [...common, '--count', '20', '--interval-ms', '20']);
    const w = await writer.rest();
    expect(w.code, w.stderr).toBe(0);
    expect(w.lines.map((l) => l.upper)).toEqual(
      Array.from({ length: 20 }, (_, i) => String(i + 1)),
    );
    const r = await reader.rest();
    expect(r.code, r.stderr).toBe(0);
    const views = r.lines.slice(0, -1);
    const last = views.at(-1);
    expect(last).toEqual({ seqno: '20', upper: '20', batches: 20, rows: '2000' });
    // Views only move forward, each consistent (one batch of 100 rows per unit of upper).
    for (const [i, v] of views.entries()) {
      expect(v.rows).toBe(String(Number(v.upper) * 100));
      if (i > 0) expect(Number(v.seqno)).toBeGreaterThan(Number(views[i - 1]?.seqno));
    }
    // Versions came by pubsub. (While idle before the writer starts, the reader may poll:
    // the first poll is 1200 ms into a wait; those polls find nothing new.)
    const stats = r.lines.at(-1) as { appliedBy: Record<string, number>; transport: string };
    expect(stats.transport).toBe('grpc');
    expect(stats.appliedBy.pubsub).toBeGreaterThanOrEqual(18);
    expect(stats.appliedBy.poll ?? 0).toBeLessThanOrEqual(2);
    expect(await b.stop()).toBe(0);
  }, 60_000);

  it('reader.ts stays correct by polling when there is no broker', async () => {
    const common = [
      '--consensus',
      `sqlite:${join(dir, 'poll.db')}`,
      '--pubsub',
      'grpc://127.0.0.1:1',
      '--shard',
      `s${randomUUID()}`,
    ];
    const reader = run(example('reader'), [
      ...common,
      '--until-upper',
      '3',
      '--timeout-ms',
      '30000',
    ]);
    await reader.line();
    const w = await run(example('writer'), [
      ...common,
      '--count',
      '3',
      '--interval-ms',
      '0',
    ]).rest();
    expect(w.code, w.stderr).toBe(0);
    const r = await reader.rest();
    expect(r.code, r.stderr).toBe(0);
    expect(r.lines.at(-2)).toMatchObject({ upper: '3', batches: 3 });
    const stats = r.lines.at(-1) as {
      appliedBy: Record<string, number>;
      consensusReads: Record<string, number>;
    };
    expect(stats.consensusReads.poll).toBeGreaterThan(0);
    expect(stats.appliedBy.pubsub ?? 0).toBe(0);
    expect(stats.appliedBy.poll).toBeGreaterThan(0);
  }, 60_000);

  it('in-process-broker.ts: same-process delegate, every commit seen without reading Consensus', async () => {
    const p = run(example('in-process-broker'), [
      '--consensus',
      `sqlite:${join(dir, 'inproc.db')}`,
      '--count',
      '30',
    ]);
    expect(String((await p.line()).listening)).toMatch(/^127\.0\.0\.1:\d+$/);
    const { lines, code, stderr } = await p.rest();
    expect(code, stderr).toBe(0);
    const s = lines[0] as {
      commits: number;
      readerSeqno: string;
      transports: string[];
      readerConsensusReads: Record<string, number>;
      p50Ms: number;
    };
    expect(s.commits).toBe(30);
    expect(s.readerSeqno).toBe('30');
    expect(s.transports).toEqual(['in-process', 'in-process']);
    expect(s.readerConsensusReads).toEqual({ open: 1 });
    expect(s.p50Ms).toBeGreaterThan(0);
  }, 60_000);

  describe('tls-token.ts', () => {
    const pki = createTestPki('pp-examples-tls-');
    afterAll(() => pki.remove());
    let made = false;
    function certs(): void {
      if (made) return;
      pki.ca('ca');
      pki.leaf('server', 'ca', 'DNS:localhost,IP:127.0.0.1');
      writeFileSync(join(dir, 'token'), `${randomUUID()}\n`);
      writeFileSync(join(dir, 'wrong-token'), 'not-the-token\n');
      made = true;
    }

    it('commits and follows a shard through a TLS broker that checks a bearer token', async () => {
      certs();
      const b = await broker([
        '--tls-cert',
        pki.path('server.crt'),
        '--tls-key',
        pki.path('server.key'),
        '--auth-token-file',
        join(dir, 'token'),
      ]);
      const base = [
        '--url',
        `grpcs://${b.grpc}`,
        '--ca',
        pki.path('ca.crt'),
        '--consensus',
        `sqlite:${join(dir, 'tls.db')}`,
      ];
      const ok = await run(example('tls-token'), [
        ...base,
        '--token-file',
        join(dir, 'token'),
        '--count',
        '10',
      ]).rest();
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.lines[0]).toMatchObject({ readerSeqno: '10', upper: '10' });
      expect(
        (ok.lines[0] as { readerConsensusReads: Record<string, number> }).readerConsensusReads
          .poll ?? 0,
      ).toBe(0);

      const denied = await run(example('tls-token'), [
        ...base,
        '--token-file',
        join(dir, 'wrong-token'),
        '--connect-timeout-ms',
        '1500',
      ]).rest();
      expect(denied.code).toBe(1);
      expect(denied.stderr).toMatch(/did not connect/);
      expect(denied.lines).toEqual([]);
      expect(await b.stop()).toBe(0);
    }, 60_000);
  });
});
