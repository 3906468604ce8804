/**
 * `persist-pubsub broker --bridge nats://…` as real processes (built JS: `npm test` builds
 * first): two brokers bridged through the shared nats-server; a Python grpcio client (a
 * gRPC-only client like the reference's) on one and a grpc-js client on the other see each
 * other's diffs once, never their own. With no clients, SIGTERM exits well before the drain
 * deadline (the bridge's connection does not hold the drain). A bad `--bridge` exits 2 naming
 * the flag.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { uniquePrefix, until } from './nats-support.js';
import { clientMissing, openClient, type TestClient } from './support/grpc-clients.js';
import { requireService, SERVICE_URLS } from './support/services.js';

const natsOk = await requireService('nats');
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const built = existsSync(cli);
if (!built) console.warn(`bridge-cli: ${cli} is missing; run npx tsc -p tsconfig.build.json`);

const children: ChildProcess[] = [];
const clients: TestClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const child of children.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
});

interface Run {
  child: ChildProcess;
  lines: Array<Record<string, unknown>>;
  stderr: () => string;
  exit: Promise<number | null>;
}

function run(args: string[]): Run {
  const child = spawn(process.execPath, [cli, 'broker', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const lines: Array<Record<string, unknown>> = [];
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      if (line.startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>);
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    err += c;
  });
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, lines, stderr: () => err, exit };
}

/** Free loopback ports for gRPC and admin (logs are JSON lines: stdout is not a terminal). */
const FREE_PORTS = ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'];

async function bridged(prefix: string, args: string[] = []): Promise<{ grpc: string; run: Run }> {
  const r = run([
    ...FREE_PORTS,
    '--bridge',
    SERVICE_URLS.nats,
    '--bridge-subject-prefix',
    prefix,
    ...args,
  ]);
  await until(() => r.lines.some((l) => l.msg === 'nats bridge connected'), 15_000, 'bridge');
  const listening = r.lines.find((l) => l.msg === 'broker listening');
  return { grpc: String(listening?.grpc), run: r };
}

const seqnosOf = (c: TestClient, shardId: string): bigint[] =>
  c.received.flatMap((m) =>
    m.message.case === 'pushDiff' && m.message.value.shardId === shardId
      ? [m.message.value.seqno]
      : [],
  );

describe.skipIf(!natsOk || !built)('persist-pubsub broker --bridge', () => {
  it.skipIf(clientMissing('python'))(
    'bridges a Python gRPC client on one broker and a grpc-js client on another',
    async () => {
      const prefix = uniquePrefix('cli');
      const A = await bridged(prefix);
      const B = await bridged(prefix);
      const S = `s${randomUUID()}`;
      const py = await openClient('python', A.grpc, { callerId: 'python' });
      const js = await openClient('grpc-js', B.grpc, { callerId: 'grpc-js' });
      clients.push(py, js);
      py.subscribe(S);
      js.subscribe(S);
      // Probes (seqno 0) until each direction is live: subscriptions travel broker → NATS.
      for (const [from, to] of [
        [py, js],
        [js, py],
      ] as const) {
        const deadline = Date.now() + 10_000;
        while (!seqnosOf(to, S).includes(0n)) {
          if (Date.now() > deadline) throw new Error(`probe ${from.kind} → ${to.kind} lost`);
          from.push(S, 0n, new Uint8Array());
          await new Promise((r) => setTimeout(r, 30));
        }
      }
      for (let i = 1n; i <= 20n; i++) py.push(S, i, new Uint8Array([Number(i)]));
      js.push(S, 100n, new Uint8Array([100]));
      await until(() => seqnosOf(js, S).filter((x) => x > 0n).length >= 20, 10_000, 'js');
      await until(() => seqnosOf(py, S).filter((x) => x > 0n).length >= 1, 10_000, 'py');
      // Markers from each side prove nothing more was in flight.
      py.push(S, 1000n, new Uint8Array());
      js.push(S, 1001n, new Uint8Array());
      await until(() => seqnosOf(js, S).includes(1000n) && seqnosOf(py, S).includes(1001n));
      const real = (xs: bigint[]) => xs.filter((x) => x > 0n && x < 1000n);
      expect(real(seqnosOf(js, S))).toEqual(Array.from({ length: 20 }, (_, i) => BigInt(i + 1)));
      expect(real(seqnosOf(py, S))).toEqual([100n]);
      expect(seqnosOf(py, S)).not.toContain(1000n);
      expect(seqnosOf(js, S)).not.toContain(1001n);
    },
  );

  it('with no clients, exits on SIGTERM without waiting the drain deadline', async () => {
    // The bridge's own connection is not a client: the drain ends at once, then the bridge.
    const { run: r } = await bridged(uniquePrefix('drain'), ['--drain-deadline-ms', '30000']);
    r.child.kill('SIGTERM');
    // Generous (a loaded box), yet a third of the 30 s deadline it used to wait.
    const exited = await Promise.race([
      r.exit,
      new Promise<'still running'>((res) => setTimeout(() => res('still running'), 10_000)),
    ]);
    expect(exited).toBe(0);
    const stopped = r.lines.find((l) => l.msg === 'broker stopped');
    expect(Number(stopped?.durationMs)).toBeLessThan(10_000);
  });

  it('rejects a bad --bridge with exit 2, naming the flag', async () => {
    const r = run([...FREE_PORTS, '--bridge', 'x']);
    expect(await r.exit).toBe(2);
    expect(r.stderr()).toMatch(/--bridge/);
    const r2 = run(['--bridge-subject-prefix', 'a.b']);
    expect(await r2.exit).toBe(2);
    expect(r2.stderr()).toMatch(/--bridge-subject-prefix needs --bridge/);
  });
});
