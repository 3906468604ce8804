/**
 * Runs the README's client example (section "Using the client") as written, against a broker on
 * a free port and a temporary SQLite file, importing the package by its name (the built
 * `dist/`; `npm test` builds first).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { type Broker, createBroker } from '../src/broker/index.js';

const root = join(import.meta.dirname, '..');
const BUILT = existsSync(join(root, 'dist', 'src', 'index.js'));
let broker: Broker | undefined;
const tmp = join(root, '.tmp', `client-readme-${process.pid}`);

afterAll(() => {
  broker?.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

describe.skipIf(!BUILT)('README client example', () => {
  it('runs as written and the reader sees the commit', async () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const section = readme.split('## Using the client')[1]?.split('\n## ')[0] ?? '';
    const code = section.split('```js\n')[1]?.split('```')[0];
    expect(code).toBeDefined();
    expect(code).toContain("'grpc://127.0.0.1:6879'");
    broker = createBroker({ listen: { host: '127.0.0.1', port: 0 } });
    await broker.start();
    mkdirSync(tmp, { recursive: true });
    const script = join(tmp, 'example.mjs');
    // Same code; only the port (free, not 6879) and the file location change.
    writeFileSync(
      script,
      code!
        .replace('grpc://127.0.0.1:6879', `grpc://127.0.0.1:${broker.address.port}`)
        .replace('sqlite:./persist.db', `sqlite:${join(tmp, 'persist.db')}`),
    );
    const { stdout } = await promisify(execFile)(process.execPath, [script], { cwd: tmp });
    expect(stdout.trim()).toBe('reader at seqno 1, upper 1');
  });
});
