import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import {
  addBrokerOptions,
  BROKER_CLI_DEFAULTS,
  type RawBrokerOptions,
  resolveBrokerConfig,
} from './broker-options.js';
import { ConfigError } from './config-error.js';

const dir = mkdtempSync(join(tmpdir(), 'pp-broker-opts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const PEM = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';

/** Parses argv with the broker flags; returns the options or the commander error text. */
function parse(
  argv: string[],
  env: Record<string, string> = {},
): { opts?: RawBrokerOptions; error?: string } {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  let error = '';
  const cmd = addBrokerOptions(new Command('broker'))
    .exitOverride()
    .configureOutput({ writeErr: (s) => (error += s), writeOut: () => {} });
  try {
    cmd.parse(argv, { from: 'user' });
    return { opts: cmd.opts<RawBrokerOptions>() };
  } catch {
    return { error };
  } finally {
    for (const k of Object.keys(env)) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

async function configError(raw: RawBrokerOptions, env = {}): Promise<ConfigError> {
  try {
    await resolveBrokerConfig(raw, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('broker flags', () => {
  it('has documented defaults for every BrokerOptions field', async () => {
    const { opts } = parse([]);
    expect(opts).toBeDefined();
    const config = await resolveBrokerConfig(opts!, {});
    expect(config.broker).toEqual({
      listen: { host: '127.0.0.1', port: 6879 },
      limits: BROKER_CLI_DEFAULTS.limits,
      keepaliveTimeMs: 30_000,
      keepaliveTimeoutMs: 10_000,
      maxConnectionAgeMs: 0,
      maxConnectionAgeGraceMs: 10_000,
      handshakeTimeoutMs: 10_000,
      http2Server: 'own',
      writeWindowUs: 0,
      maxCallerIdLabels: 100,
      reflection: true,
      flags: { forwardPushes: true },
    });
    expect(config.adminListen).toEqual({ host: '127.0.0.1', port: 6880 });
    expect(config.drainDeadlineMs).toBe(10_000);
    expect(config.logLevel).toBe('info');
  });

  it('--help lists every flag with its default and environment variable', () => {
    const help = addBrokerOptions(new Command('broker')).helpInformation();
    expect(help).toContain('(default: 127.0.0.1:6879, env: PERSIST_PUBSUB_LISTEN)');
    expect(help).toContain('(default: 127.0.0.1:6880, env: PERSIST_PUBSUB_ADMIN_LISTEN)');
    expect(help).toContain('(default: 4194304, env: PERSIST_PUBSUB_MAX_MESSAGE_BYTES)');
    expect(help).toContain('(default: 10000, env: PERSIST_PUBSUB_DRAIN_DEADLINE_MS)');
    expect(help).toContain('PERSIST_PUBSUB_AUTH_TOKEN');
    const flags = [...help.matchAll(/^ {2}(--[a-z-]+)/gm)].map((m) => m[1]);
    expect(flags.length).toBe(32);
    for (const line of help.split('\n').filter((l) => /^ {2}--/.test(l))) {
      expect(line, line).toMatch(/env: PERSIST_PUBSUB_/);
    }
  });

  it('takes flags over environment variables over defaults', async () => {
    const env = { PERSIST_PUBSUB_LISTEN: '127.0.0.2:7000', PERSIST_PUBSUB_MAX_CONNECTIONS: '5' };
    const a = parse(['--max-connections', '9'], env).opts!;
    expect(a.listen).toEqual({ host: '127.0.0.2', port: 7000 });
    expect(a.maxConnections).toBe(9);
    const b = parse([], { PERSIST_PUBSUB_FORWARD_PUSHES: 'false' }).opts!;
    expect(b.forwardPushes).toBe(false);
    const c = parse(['--reflection', 'false']).opts!;
    expect((await resolveBrokerConfig(c, {})).broker.reflection).toBe(false);
    const d = parse(['--handshake-timeout-ms', '500'], {
      PERSIST_PUBSUB_MAX_TCP_CONNECTIONS: '7',
    }).opts!;
    expect([d.maxTcpConnections, d.handshakeTimeoutMs]).toEqual([7, 500]);
    const w = parse([], { PERSIST_PUBSUB_WRITE_WINDOW_US: '1000' }).opts!;
    expect((await resolveBrokerConfig(w, {})).broker.writeWindowUs).toBe(1000);
    expect(parse([]).opts!.writeWindowUs).toBe(0);
    expect((await resolveBrokerConfig(parse([]).opts!, {})).broker.http2Server).toBe('own');
    const h = parse(['--http2-server', 'node']).opts!;
    expect((await resolveBrokerConfig(h, {})).broker.http2Server).toBe('node');
  });

  it.each([
    [['--listen', 'nope'], {}, "option '--listen <address>' argument 'nope' is invalid"],
    [['--listen', 'unix://host/x.sock'], {}, 'no authority'],
    [['--socket-mode', '0999'], {}, '--socket-mode'],
    [['--max-queue-messages', '0'], {}, '--max-queue-messages'],
    [['--keepalive-time-ms', '-5'], {}, '--keepalive-time-ms'],
    [['--write-window-us', '100001'], {}, '--write-window-us'],
    [['--log-level', 'loud'], {}, '--log-level'],
    [['--http2-server', 'nghttp2'], {}, '--http2-server'],
    [['--bogus'], {}, "unknown option '--bogus'"],
    [[], { PERSIST_PUBSUB_ADMIN_LISTEN: '1.2.3.4' }, "from env 'PERSIST_PUBSUB_ADMIN_LISTEN'"],
  ])('rejects %j %j naming the flag', (argv, env, text) => {
    const { error } = parse(argv, env);
    expect(error).toContain(text);
  });

  it('rejects inconsistent combinations naming the flag', async () => {
    const base = parse([]).opts!;
    expect((await configError({ ...base, tlsKey: 'k' })).flag).toBe('--tls-key');
    expect((await configError({ ...base, tlsCert: 'c' })).flag).toBe('--tls-cert');
    expect((await configError({ ...base, tlsClientCa: 'ca' })).flag).toBe('--tls-client-ca');
    const q = await configError({ ...base, maxQueueBytes: 10, maxMessageBytes: 100 });
    expect(q.message).toContain('--max-queue-bytes');
    const same = await configError({ ...base, adminListen: { host: '127.0.0.1', port: 6879 } });
    expect(same.flag).toBe('--admin-listen');
    expect((await configError({ ...base, socketMode: 0o660 })).flag).toBe('--socket-mode');
    const unix = { ...base, listen: { path: '/run/pp.sock' } };
    expect((await configError({ ...unix, tlsCert: 'c', tlsKey: 'k' })).flag).toBe('--tls-cert');
  });

  it('listens on a Unix socket: --listen unix:PATH, --socket-mode', async () => {
    const a = parse(['--listen', 'unix:///run/pp.sock', '--socket-mode', '0660']).opts!;
    expect(a.listen).toEqual({ path: '/run/pp.sock' });
    expect((await resolveBrokerConfig(a, {})).broker.listen).toEqual({
      path: '/run/pp.sock',
      mode: 0o660,
    });
    const b = parse([], { PERSIST_PUBSUB_LISTEN: 'unix:pp.sock' }).opts!;
    expect((await resolveBrokerConfig(b, {})).broker.listen).toEqual({ path: 'pp.sock' });
  });

  it('reads TLS files and rejects unreadable or non-PEM ones', async () => {
    const base = parse([]).opts!;
    const cert = file('cert.pem', PEM);
    const key = file('key.pem', PEM.replaceAll('CERTIFICATE', 'PRIVATE KEY'));
    const ok = await resolveBrokerConfig(
      { ...base, tlsCert: cert, tlsKey: key, tlsClientCa: cert },
      {},
    );
    expect(ok.broker.tls?.cert.toString()).toBe(PEM);
    expect(ok.broker.tls?.clientCa?.toString()).toBe(PEM);
    const missing = await configError({ ...base, tlsCert: join(dir, 'nope.pem'), tlsKey: key });
    expect(missing.flag).toBe('--tls-cert');
    expect(missing.message).toMatch(/--tls-cert: cannot read .*nope\.pem: ENOENT/);
    const notPem = await configError({ ...base, tlsCert: cert, tlsKey: file('k.txt', 'hello') });
    expect(notPem.message).toContain('--tls-key');
    expect(notPem.message).toContain('not a PEM file');
  });

  it('reads the token from --auth-token-file (trailing newline trimmed) or the environment', async () => {
    const base = parse([]).opts!;
    const f = file('token', 's3cret-token\n');
    const env = { PERSIST_PUBSUB_AUTH_TOKEN: 'from-env' };
    expect((await resolveBrokerConfig({ ...base, authTokenFile: f }, env)).broker.authToken).toBe(
      's3cret-token',
    );
    expect((await resolveBrokerConfig(base, env)).broker.authToken).toBe('from-env');
    expect((await resolveBrokerConfig(base, {})).broker.authToken).toBeUndefined();
    expect((await configError({ ...base, authTokenFile: file('empty', '\n') })).message).toContain(
      'empty',
    );
    expect((await configError(base, { PERSIST_PUBSUB_AUTH_TOKEN: 'has space' })).flag).toBe(
      'PERSIST_PUBSUB_AUTH_TOKEN',
    );
    expect((await configError({ ...base, authTokenFile: join(dir, 'none') })).flag).toBe(
      '--auth-token-file',
    );
  });

  it('reads --auth-tokens-file at start; a bad one is a configuration error naming the entry', async () => {
    const base = parse([]).opts!;
    const tokens = [{ name: 'reader', token: 'tok-r', subscribe: ['s*'] }];
    const text = JSON.stringify({ tokens });
    const ok = await resolveBrokerConfig(
      { ...base, authTokensFile: file('t1.json', text) },
      { PERSIST_PUBSUB_AUTH_TOKEN: 'plain' },
    );
    expect(ok.broker.tokens).toEqual(tokens);
    expect(ok.broker.authToken).toBe('plain');
    expect(ok.tokensFile?.text).toBe(text);
    const bad = await configError({
      ...base,
      authTokensFile: file(
        't2.json',
        '{"tokens": [{"name": "r", "token": "t", "publish": ["a*b"]}]}',
      ),
    });
    expect(bad.flag).toBe('--auth-tokens-file');
    expect(bad.message).toContain('tokens[0].publish[0] "a*b"');
    const twice = await configError(
      { ...base, authTokensFile: file('t3.json', text) },
      { PERSIST_PUBSUB_AUTH_TOKEN: 'tok-r' },
    );
    expect(twice.message).toContain('also one of its tokens');
    expect((await configError({ ...base, authTokensFile: join(dir, 'none') })).flag).toBe(
      '--auth-tokens-file',
    );
  });

  it('lays the flags file over --forward-pushes and rejects an invalid one', async () => {
    const base = parse(['--forward-pushes', 'false']).opts!;
    const none = await resolveBrokerConfig({ ...base, flagsFile: file('f1.json', '{}') }, {});
    expect(none.broker.flags).toEqual({ forwardPushes: false });
    expect(none.flagsFile?.text).toBe('{}');
    const on = await resolveBrokerConfig(
      { ...base, flagsFile: file('f2.json', '{"forwardPushes": true}') },
      {},
    );
    expect(on.broker.flags).toEqual({ forwardPushes: true });
    expect(on.baseFlags).toEqual({ forwardPushes: false });
    const bad = await configError({ ...base, flagsFile: file('f3.json', '{"x": 1}') });
    expect(bad.flag).toBe('--flags-file');
    expect(bad.message).toContain('unknown flag "x"');
  });
});
