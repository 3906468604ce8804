/**
 * The real `persist-pubsub broker` process (built JS: `npm test` builds first): it starts on
 * free ports and logs them, serves /metrics, /readyz and the listings, forwards diffs between
 * real gRPC clients, reloads its flags file, drains on SIGTERM (exit 0 before the deadline),
 * exits at once on a second signal, serves TLS with a bearer token from files, and rejects bad
 * flags with exit code 2 and a message naming the flag.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectQuiet, openClient, type TestClient, until } from './support/grpc-clients.js';
import { OPENSSL, requirePrerequisite } from './support/prerequisites.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const work = mkdtempSync(join(tmpdir(), 'pp-cli-broker-'));

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

interface BrokerRun {
  child: ChildProcess;
  lines: LogLine[];
  stdout: () => string;
  stderr: () => string;
  grpc: string;
  admin: string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>;
  waitForLog(predicate: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

const children: ChildProcess[] = [];
const clients: TestClient[] = [];

function run(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [cli, 'broker', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  children.push(child);
  const lines: LogLine[] = [];
  let out = '';
  let all = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    all += chunk;
    out += chunk;
    let nl = out.indexOf('\n');
    while (nl >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      if (line.startsWith('{')) lines.push(JSON.parse(line) as LogLine);
      nl = out.indexOf('\n');
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>(
    (resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal, atMs: Date.now() }));
    },
  );
  return { child, lines, stdout: () => all, stderr: () => err, exit };
}

async function startBroker(args: string[] = [], env: Record<string, string> = {}) {
  const r = run(
    ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--log-level', 'debug', ...args],
    env,
  );
  const waitForLog = async (predicate: (l: LogLine) => boolean, timeoutMs = 10_000) => {
    let found: LogLine | undefined;
    let exited = false;
    void r.exit.then(() => {
      exited = true;
    });
    await until(
      () => {
        found = r.lines.find(predicate);
        if (found === undefined && exited) {
          throw new Error(`broker exited: ${r.stderr()} ${JSON.stringify(r.lines.slice(-3))}`);
        }
        return found !== undefined;
      },
      timeoutMs,
      'a broker log line',
    );
    return found as LogLine;
  };
  const listening = await waitForLog((l) => l.msg === 'broker listening');
  return {
    ...r,
    grpc: String(listening.grpc),
    admin: String(listening.admin),
    waitForLog,
  } satisfies BrokerRun;
}

async function client(address: string, options = {}): Promise<TestClient> {
  const c = await openClient('grpc-js', address, options);
  clients.push(c);
  return c;
}

const shard = () => `s${randomUUID()}`;

/** The TLS test makes a throwaway certificate with the openssl command. */
const hasOpenssl = requirePrerequisite(OPENSSL);

/** Subscribes `c` to `shardId` and waits until the broker lists a subscriber for it. */
async function subscribed(b: BrokerRun, c: TestClient, shardId: string, count = 1) {
  c.subscribe(shardId);
  const end = Date.now() + 5000;
  for (;;) {
    const res = await fetch(`http://${b.admin}/v1/shards?page_size=1000`);
    const body = (await res.json()) as { shards: Array<{ shard_id: string; subscribers: number }> };
    if (body.shards.some((s) => s.shard_id === shardId && s.subscribers >= count)) return;
    if (Date.now() > end) throw new Error(`${shardId} never listed with ${count} subscribers`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Lets every client go, then SIGTERM: with nobody connected the drain ends at once. */
async function stopCleanly(b: BrokerRun): Promise<void> {
  for (const c of clients.splice(0)) c.close();
  const sentAt = Date.now();
  b.child.kill('SIGTERM');
  const exit = await b.exit;
  expect(exit.code).toBe(0);
  expect(exit.atMs - sentAt).toBeLessThan(3000);
}

beforeAll(() => {
  if (!existsSync(cli)) {
    execFileSync(
      process.execPath,
      [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
      {
        cwd: root,
      },
    );
  }
}, 120_000);

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('persist-pubsub broker (real process)', () => {
  it('serves gRPC and admin HTTP, forwards diffs, and drains on SIGTERM with exit 0', async () => {
    const deadlineMs = 1500;
    const b = await startBroker(['--drain-deadline-ms', String(deadlineMs)]);
    expect(b.grpc).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(b.grpc).not.toBe('127.0.0.1:0');
    expect(b.admin).toMatch(/^127\.0\.0\.1:\d+$/);

    expect((await fetch(`http://${b.admin}/healthz`)).status).toBe(200);
    expect((await fetch(`http://${b.admin}/readyz`)).status).toBe(200);

    const id = shard();
    const publisher = await client(b.grpc, { callerId: 'cli-test-pub' });
    const subscriber = await client(b.grpc, { callerId: 'cli-test-sub' });
    await subscribed(b, subscriber, id);
    publisher.push(id, 1n, new Uint8Array([1, 2, 3]));
    const [msg] = await subscriber.waitFor(1);
    expect(msg?.message.case).toBe('pushDiff');
    expect(msg?.message.value).toMatchObject({ shardId: id, seqno: 1n });

    const metrics = await fetch(`http://${b.admin}/metrics`);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await metrics.text();
    expect(text).toMatch(/^persist_pubsub_server_active_connections 2$/m);

    const conns = (await (await fetch(`http://${b.admin}/v1/connections`)).json()) as {
      connections: Array<{ caller_id: string; subscriptions: number }>;
      next_page_token?: string;
    };
    expect(conns.connections.map((c) => c.caller_id).sort()).toEqual([
      'cli-test-pub',
      'cli-test-sub',
    ]);
    expect(conns.next_page_token).toBeUndefined();

    // SIGTERM with a subscriber still connected: /readyz turns 503 while the drain waits.
    const sentAt = Date.now();
    b.child.kill('SIGTERM');
    await until(() => b.lines.some((l) => l.msg?.startsWith('draining')), 5000, 'drain log');
    expect((await fetch(`http://${b.admin}/readyz`)).status).toBe(503);
    const ended = await subscriber.ended;
    expect(ended.code).toBe('UNAVAILABLE');
    const exit = await b.exit;
    expect(exit).toMatchObject({ code: 0, signal: null });
    // The client held on, so the broker waits out the deadline, then ends streams and exits
    // within its 1 s session grace (+ slack for a loaded machine).
    expect(exit.atMs - sentAt).toBeLessThan(deadlineMs + 3000);
    expect(exit.atMs - sentAt).toBeGreaterThanOrEqual(deadlineMs - 100);
    expect(b.lines.some((l) => l.msg === 'broker stopped')).toBe(true);
  });

  it('reloads the flags file on change: forwarding off, an invalid file kept out, back on', async () => {
    const flagsPath = join(work, `flags-${randomUUID()}.json`);
    writeFileSync(flagsPath, '{"forwardPushes": true}');
    const b = await startBroker(['--flags-file', flagsPath]);
    const id = shard();
    const pub = await client(b.grpc);
    const sub = await client(b.grpc);
    await subscribed(b, sub, id);
    pub.push(id, 1n, new Uint8Array([1]));
    await sub.waitFor(1);

    writeFileSync(flagsPath, '{"forwardPushes": false}');
    await b.waitForLog((l) => l.msg === 'flags reloaded');
    pub.push(id, 2n, new Uint8Array([2]));
    await expectQuiet(sub, 300);
    expect(sub.received.filter((m) => m.message.case === 'pushDiff')).toHaveLength(1);

    writeFileSync(flagsPath, '{"forwardPushes": "yes please"}');
    const rejected = await b.waitForLog((l) => l.msg.startsWith('flags file rejected'));
    expect(rejected.level).toBe(50);
    expect(rejected.reason).toContain('forwardPushes must be a boolean');
    pub.push(id, 3n, new Uint8Array([3]));
    await expectQuiet(sub, 300);
    expect(sub.received.filter((m) => m.message.case === 'pushDiff')).toHaveLength(1);

    writeFileSync(flagsPath, '{}');
    await until(
      () => b.lines.filter((l) => l.msg === 'flags reloaded').length === 2,
      5000,
      'second reload',
    );
    pub.push(id, 4n, new Uint8Array([4]));
    const got = await sub.waitFor(2);
    expect(got[1]?.message.value).toMatchObject({ seqno: 4n });
    await stopCleanly(b);
  });

  it('a second signal during the drain exits at once with 1', async () => {
    const b = await startBroker(['--drain-deadline-ms', '60000']);
    const sub = await client(b.grpc);
    await subscribed(b, sub, shard());
    b.child.kill('SIGTERM');
    await b.waitForLog((l) => l.msg.startsWith('draining'));
    const second = Date.now();
    b.child.kill('SIGINT');
    const exit = await b.exit;
    expect(exit.code).toBe(1);
    expect(exit.atMs - second).toBeLessThan(3000);
  });

  it.skipIf(!hasOpenssl)('serves TLS with a bearer token read from files', async () => {
    const cert = join(work, 'cert.pem');
    const key = join(work, 'key.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout',
        key,
        '-out',
        cert,
      ],
      { stdio: 'ignore' },
    );
    const tokenFile = join(work, 'token');
    writeFileSync(tokenFile, 'cli-test-token\n');
    const b = await startBroker([
      '--tls-cert',
      cert,
      '--tls-key',
      key,
      '--auth-token-file',
      tokenFile,
    ]);
    const listening = b.lines.find((l) => l.msg === 'broker listening');
    expect(listening).toMatchObject({ tls: 'tls', auth: 'bearer' });
    const ca = readFileSync(cert, 'utf8');
    const noToken = await client(b.grpc, { ca });
    noToken.subscribe(shard());
    expect((await noToken.ended).code).toBe('UNAUTHENTICATED');
    const id = shard();
    const pub = await client(b.grpc, { ca, token: 'cli-test-token' });
    const sub = await client(b.grpc, { ca, token: 'cli-test-token' });
    await subscribed(b, sub, id);
    pub.push(id, 7n, new Uint8Array([7]));
    expect((await sub.waitFor(1))[0]?.message.value).toMatchObject({ seqno: 7n });
    await stopCleanly(b);
  });

  it.each([
    [['--listen', 'nowhere'], {}, '--listen'],
    [['--max-connections', '0'], {}, '--max-connections'],
    [['--log-level', 'chatty'], {}, '--log-level'],
    [['--frobnicate'], {}, '--frobnicate'],
    [[], { PERSIST_PUBSUB_ADMIN_LISTEN: 'bad' }, 'PERSIST_PUBSUB_ADMIN_LISTEN'],
    [
      ['--tls-cert', '/nonexistent/cert.pem', '--tls-key', '/nonexistent/key.pem'],
      {},
      '--tls-cert: cannot read /nonexistent/cert.pem',
    ],
    [['--tls-key', '/tmp/k.pem'], {}, '--tls-key needs --tls-cert'],
    [['--auth-token-file', '/nonexistent/token'], {}, '--auth-token-file'],
    [['--flags-file', '/nonexistent/flags.json'], {}, '--flags-file'],
  ])('rejects %j %j with exit 2 naming %s', async (args, env, text) => {
    const r = run(args, env as Record<string, string>);
    const exit = await r.exit;
    expect(exit.code).toBe(2);
    expect(r.stderr()).toContain(text);
    expect(r.lines.some((l) => l.msg === 'broker listening')).toBe(false);
  });

  it('logs JSON lines when piped and pino-pretty text with --log-format pretty', async () => {
    const r = run([
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      '--log-format',
      'pretty',
    ]);
    await until(() => r.stdout().includes('broker listening'), 10_000, 'pretty listening line');
    expect(r.stdout()).toMatch(/INFO.*broker listening/);
    expect(r.stdout()).toMatch(/^\s+grpc: "127\.0\.0\.1:\d+"/m);
    expect(r.lines).toEqual([]);
    r.child.kill('SIGTERM');
    expect((await r.exit).code).toBe(0);
  });

  it('exits 1 with "cannot start" when the gRPC port is taken', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const { port } = blocker.address() as AddressInfo;
    try {
      const r = run(['--listen', `127.0.0.1:${port}`, '--admin-listen', '127.0.0.1:0']);
      expect((await r.exit).code).toBe(1);
      expect(r.stderr()).toContain('cannot start');
      expect(r.stderr()).toContain('EADDRINUSE');
    } finally {
      blocker.close();
    }
  });

  it('--help documents each flag with its default and environment variable', async () => {
    const r = run(['--help']);
    expect((await r.exit).code).toBe(0);
    const help = r.stdout();
    const flagLines = help.split('\n').filter((l) => /^ {2}--/.test(l));
    expect(flagLines.length).toBeGreaterThanOrEqual(24);
    for (const line of flagLines) expect(line, line).toContain('env: PERSIST_PUBSUB_');
    expect(help).toContain('(default: 127.0.0.1:6879, env: PERSIST_PUBSUB_LISTEN)');
    expect(help).toContain('(default: 127.0.0.1:6880, env: PERSIST_PUBSUB_ADMIN_LISTEN)');
  });

  it("runs the README's broker command and knows every flag its section names", async () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const section = readme.split('## Running the broker')[1]?.split('\n## ')[0] ?? '';
    const command = section
      .split('\n')
      .find((l) => l.startsWith('    node dist/src/cli/main.js broker '));
    expect(command).toBeDefined();
    // The README's ports would collide with parallel suites: keep its flags, use free ports.
    const args = command!
      .trim()
      .split(/\s+/)
      .slice(3)
      .map((a) => a.replace(/:(6879|6880)$/, ':0'));
    const r = run(args);
    await until(
      () => r.lines.some((l) => l.msg === 'broker listening'),
      10_000,
      'the README command to listen',
    );
    const help = run(['--help']);
    await help.exit;
    const named = new Set(section.match(/--[a-z][a-z0-9-]+/g));
    expect(named.size).toBeGreaterThan(8);
    for (const flag of named) {
      if (flag === '--help') continue;
      expect(help.stdout(), flag).toContain(`  ${flag} `);
    }
    const admin = String(r.lines.find((l) => l.msg === 'broker listening')?.admin);
    expect((await fetch(`http://${admin}/readyz`)).status).toBe(200);
    r.child.kill('SIGTERM');
    expect((await r.exit).code).toBe(0);
  });
});
