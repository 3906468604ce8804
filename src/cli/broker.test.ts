import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type {
  Broker,
  BrokerFlags,
  BrokerOptions,
  BrokerState,
  InProcessConnection,
  TokenGrant,
} from '../broker/index.js';
import { type BrokerProcess, startBrokerProcess } from './broker.js';
import type { BrokerCliConfig } from './config/broker-options.js';

/** A broker double: records calls; `close()` waits until the test releases it. */
class FakeBroker implements Broker {
  state: BrokerState = 'starting';
  readonly registry: Registry;
  flags: BrokerFlags;
  readonly flagChanges: Array<Partial<BrokerFlags>> = [];
  readonly closeCalls: Array<{ deadlineMs?: number | undefined }> = [];
  destroyed = 0;
  startError: Error | undefined;
  private release!: () => void;
  private readonly closing = new Promise<void>((r) => {
    this.release = r;
  });

  constructor(readonly options: BrokerOptions) {
    this.registry = options.registry as Registry;
    this.flags = { forwardPushes: true, ...options.flags };
  }
  get address() {
    return { host: '127.0.0.1', port: 16879 };
  }
  /** If set, `start()` waits for it (a slow bind). */
  startGate: Promise<void> | undefined;
  async start() {
    await this.startGate;
    if (this.startError) throw this.startError;
    this.state = 'serving';
  }
  isReady() {
    return this.state === 'serving';
  }
  listShards() {
    return { items: [] };
  }
  listConnections() {
    return { items: [] };
  }
  setFlags(flags: Partial<BrokerFlags>) {
    this.flagChanges.push(flags);
    this.flags = { ...this.flags, ...flags };
  }
  readonly tokenChanges: TokenGrant[][] = [];
  setTokens(tokens: readonly TokenGrant[]) {
    this.tokenChanges.push([...tokens]);
  }
  close(options?: { deadlineMs?: number | undefined }) {
    this.closeCalls.push({ ...options });
    return this.closing;
  }
  finishClose() {
    this.state = 'closed';
    this.release();
  }
  destroy() {
    this.destroyed++;
    this.state = 'closed';
  }
  connectInProcess(): InProcessConnection {
    throw new Error('not used');
  }
}

function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { logger, lines };
}

function config(over: Partial<BrokerCliConfig> = {}): BrokerCliConfig {
  return {
    broker: { listen: { host: '127.0.0.1', port: 0 }, flags: { forwardPushes: true } },
    adminListen: { host: '127.0.0.1', port: 0 },
    drainDeadlineMs: 5_000,
    logLevel: 'debug',
    logFormat: 'json',
    baseFlags: { forwardPushes: true },
    ...over,
  };
}

const running: BrokerProcess[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const p of running.splice(0)) {
    p.admin.destroy();
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(cfg = config(), extra: { drainGraceMs?: number } = {}) {
  let fake: FakeBroker | undefined;
  const signals = new EventEmitter();
  const { logger, lines } = captureLogger();
  const proc = await startBrokerProcess(cfg, {
    createBroker: (o) => {
      fake = new FakeBroker(o);
      return fake;
    },
    logger,
    signals: signals as unknown as Pick<NodeJS.Process, 'on' | 'off'>,
    ...extra,
  });
  running.push(proc);
  const readyz = () =>
    fetch(`http://127.0.0.1:${proc.admin.address.port}/readyz`).then((r) => r.status);
  return { proc, broker: fake as FakeBroker, signals, lines, readyz };
}

describe('broker process lifecycle', () => {
  it('logs both bound addresses and gives the broker its own registry and logger', async () => {
    const { proc, broker, lines } = await start();
    const line = lines.find((l) => l.msg === 'broker listening');
    expect(line?.grpc).toBe('127.0.0.1:16879');
    expect(line?.admin).toBe(`127.0.0.1:${proc.admin.address.port}`);
    expect(proc.admin.address.port).toBeGreaterThan(0);
    expect(broker.options.registry).toBeDefined();
    expect(broker.options.logger).toBeDefined();
    expect(proc.phase).toBe('serving');
  });

  it('on SIGTERM turns /readyz 503 at once, drains with the deadline, then exits 0', async () => {
    const { proc, broker, signals, readyz, lines } = await start();
    expect(await readyz()).toBe(200);
    signals.emit('SIGTERM', 'SIGTERM');
    // The broker has not finished closing and still says ready; the admin port must not.
    expect(broker.state).toBe('serving');
    expect(await readyz()).toBe(503);
    expect(broker.closeCalls).toEqual([{ deadlineMs: 5_000 }]);
    expect(proc.phase).toBe('draining');
    broker.finishClose();
    expect(await proc.exited).toBe(0);
    expect(broker.destroyed).toBe(0);
    expect(proc.phase).toBe('stopped');
    expect(signals.listenerCount('SIGTERM') + signals.listenerCount('SIGHUP')).toBe(0);
    expect(lines.some((l) => l.msg === 'broker stopped')).toBe(true);
  });

  it('a second signal during the drain destroys everything and exits 1', async () => {
    const { proc, broker, signals } = await start();
    signals.emit('SIGINT', 'SIGINT');
    signals.emit('SIGTERM', 'SIGTERM');
    expect(await proc.exited).toBe(1);
    expect(broker.destroyed).toBe(1);
    expect(proc.admin.state).not.toBe('listening');
  });

  it('forces the exit (1) when the drain overruns its deadline', async () => {
    const { proc, broker, signals, lines } = await start(config({ drainDeadlineMs: 20 }), {
      drainGraceMs: 30,
    });
    signals.emit('SIGTERM', 'SIGTERM');
    expect(await proc.exited).toBe(1);
    expect(broker.destroyed).toBe(1);
    expect(lines.some((l) => l.why === 'drain overran its deadline')).toBe(true);
  });

  it('SIGHUP reloads the flags file over the command-line flags', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pp-cli-'));
    dirs.push(dir);
    const path = join(dir, 'flags.json');
    writeFileSync(path, '{}');
    const { broker, signals, lines } = await start(
      config({ flagsFile: { path, text: '{}' }, baseFlags: { forwardPushes: true } }),
    );
    writeFileSync(path, '{"forwardPushes": false}');
    signals.emit('SIGHUP', 'SIGHUP');
    const end = Date.now() + 5000;
    while (broker.flags.forwardPushes && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(broker.flags).toEqual({ forwardPushes: false });
    expect(broker.flagChanges[0]).toEqual({ forwardPushes: false });
    expect(lines.some((l) => l.msg === 'flags reloaded')).toBe(true);
  });

  it('SIGHUP reloads the tokens file into the broker; a bad one leaves it alone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pp-cli-'));
    dirs.push(dir);
    const path = join(dir, 'tokens.json');
    const text = '{"tokens": []}';
    writeFileSync(path, text);
    const { broker, signals, lines, proc } = await start(
      config({ tokensFile: { path, text }, broker: { tokens: [] } }),
    );
    expect(lines.find((l) => l.msg === 'broker listening')).toMatchObject({
      auth: 'tokens(0)',
      tokensFile: path,
    });
    const next = [{ name: 'reader', token: 'tok-r', subscribe: ['s*'] }];
    writeFileSync(path, JSON.stringify({ tokens: next }));
    signals.emit('SIGHUP', 'SIGHUP');
    const end = Date.now() + 5000;
    while (broker.tokenChanges.length === 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(broker.tokenChanges).toEqual([next]);
    writeFileSync(path, '{"tokens": [{"name": "reader"}]}');
    await proc.reloadTokens();
    expect(broker.tokenChanges).toHaveLength(1);
    expect(lines.some((l) => l.msg?.toString().startsWith('tokens file rejected'))).toBe(true);
    expect(await broker.registry.metrics()).toMatch(
      /persist_pubsub_server_auth_tokens_reloads_total\{result="rejected"\} 1/,
    );
  });

  it('a SIGTERM during start-up is held, then drains once serving (exit 0)', async () => {
    const signals = new EventEmitter();
    let fake: FakeBroker | undefined;
    let open!: () => void;
    const starting = startBrokerProcess(config(), {
      createBroker: (o) => {
        fake = new FakeBroker(o);
        fake.startGate = new Promise<void>((r) => {
          open = r;
        });
        return fake;
      },
      logger: pino({ level: 'silent' }),
      signals: signals as unknown as Pick<NodeJS.Process, 'on' | 'off'>,
    });
    // Node's default for an unhandled SIGTERM is to die at once: a listener must be there.
    expect(signals.listenerCount('SIGTERM')).toBe(1);
    signals.emit('SIGTERM', 'SIGTERM');
    expect(fake?.closeCalls).toEqual([]);
    open();
    const proc = await starting;
    running.push(proc);
    expect(proc.phase).toBe('draining');
    expect(fake?.closeCalls).toEqual([{ deadlineMs: 5_000 }]);
    fake?.finishClose();
    expect(await proc.exited).toBe(0);
  });

  it('a broker that cannot start leaves nothing running and rejects', async () => {
    const signals = new EventEmitter();
    let fake: FakeBroker | undefined;
    await expect(
      startBrokerProcess(config(), {
        createBroker: (o) => {
          fake = new FakeBroker(o);
          fake.startError = Object.assign(new Error('EADDRINUSE'), { code: 'EADDRINUSE' });
          return fake;
        },
        logger: pino({ level: 'silent' }),
        signals: signals as unknown as Pick<NodeJS.Process, 'on' | 'off'>,
      }),
    ).rejects.toThrow('EADDRINUSE');
    expect(fake?.destroyed).toBe(1);
    expect(signals.listenerCount('SIGTERM')).toBe(0);
  });
});
