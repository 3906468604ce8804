/**
 * The admin port (metrics, listings, readiness) and the gRPC port are loopback-only by default:
 * - in a private network namespace (`unshare -n`, where the default ports are free) the real
 *   CLI started with no listen flags answers on 127.0.0.1 and refuses connections to another
 *   address of the same host (10.9.9.9 on lo);
 * - on this host, an admin server on the default host refuses a non-loopback interface address.
 * (TLS-required, tokens and mTLS from a wrong CA are covered in test/broker-security.test.ts.)
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Broker,
  createAdminServer,
  createBroker,
  DEFAULT_ADMIN_LISTEN,
  DEFAULT_LISTEN,
} from '../../src/broker/index.js';
import { requirePrerequisite, UNSHARE_NET } from '../support/prerequisites.js';
import { tcpReachable } from '../support/services.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const BUILT = existsSync(CLI);

const nonLoopback = Object.values(networkInterfaces())
  .flat()
  .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address;

describe('loopback-only defaults', () => {
  it('the defaults are 127.0.0.1', () => {
    expect(DEFAULT_ADMIN_LISTEN.host).toBe('127.0.0.1');
    expect(DEFAULT_LISTEN.host).toBe('127.0.0.1');
  });

  it.skipIf(!BUILT || !requirePrerequisite(UNSHARE_NET))(
    'the CLI with no listen flags: reachable on 127.0.0.1, refused on another address',
    () => {
      // Runs wholly inside a fresh network namespace: the CLI, then a probe of both ports on
      // both addresses; prints one JSON line.
      const probe = `
        const net = require('node:net');
        const http = require('node:http');
        const reach = (host, port) => new Promise((r) => {
          const s = net.connect({ host, port });
          s.setTimeout(2000, () => { s.destroy(); r('timeout'); });
          s.once('connect', () => { s.destroy(); r('open'); });
          s.once('error', (e) => r(e.code));
        });
        const get = (host, port, path) => new Promise((r) => {
          http.get({ host, port, path, timeout: 5000 }, (res) => { res.resume(); r(res.statusCode); })
            .on('error', (e) => r(e.code));
        });
        (async () => {
          for (let i = 0; i < 300 && (await reach('127.0.0.1', 6880)) !== 'open'; i++)
            await new Promise((r) => setTimeout(r, 100));
          console.log(JSON.stringify({
            adminLoopback: await get('127.0.0.1', 6880, '/healthz'),
            adminOther: await reach('10.9.9.9', 6880),
            grpcLoopback: await reach('127.0.0.1', 6879),
            grpcOther: await reach('10.9.9.9', 6879),
          }));
        })();`;
      const script = [
        'ip link set lo up',
        'ip addr add 10.9.9.9/32 dev lo',
        `"${process.execPath}" "${CLI}" broker --log-format json >/dev/null 2>&1 &`,
        'pid=$!',
        `"${process.execPath}" -e "$PROBE"`,
        'kill -TERM $pid',
        'wait $pid',
        'echo "exit=$?"',
      ].join('\n');
      const r = spawnSync('unshare', ['-n', 'sh', '-c', script], {
        env: { ...process.env, PROBE: probe },
        encoding: 'utf8',
        timeout: 60_000,
      });
      const lines = r.stdout.trim().split('\n');
      const result = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
      console.log(`[security] netns probe: ${r.stdout.trim().replace(/\n/g, ' ')}`);
      expect(result).toEqual({
        adminLoopback: 200,
        adminOther: 'ECONNREFUSED',
        grpcLoopback: 'open',
        grpcOther: 'ECONNREFUSED',
      });
      expect(lines[1]).toBe('exit=0');
    },
    90_000,
  );

  describe.skipIf(nonLoopback === undefined)('on this host', () => {
    let broker: Broker;
    let admin: ReturnType<typeof createAdminServer>;
    beforeAll(async () => {
      broker = createBroker({ listen: { host: DEFAULT_LISTEN.host, port: 0 } });
      await broker.start();
      admin = createAdminServer({ broker, listen: { host: DEFAULT_ADMIN_LISTEN.host, port: 0 } });
      await admin.start();
    });
    afterAll(async () => {
      await admin.close();
      broker.destroy();
    });

    it(`the admin and gRPC ports refuse ${nonLoopback ?? 'a non-loopback address'}`, async () => {
      const host = nonLoopback as string;
      expect(admin.address.host).toBe('127.0.0.1');
      expect(await tcpReachable('127.0.0.1', admin.address.port, 5000)).toBe(true);
      expect(await tcpReachable(host, admin.address.port, 5000)).toBe(false);
      expect(await tcpReachable('127.0.0.1', broker.address.port, 5000)).toBe(true);
      expect(await tcpReachable(host, broker.address.port, 5000)).toBe(false);
    });
  });
});
