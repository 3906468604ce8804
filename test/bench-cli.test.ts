import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { leadingDocComment } from '../bench/usage.js';

describe('leadingDocComment', () => {
  it('strips the comment markers and keeps the lines', () => {
    const src =
      '/**\n * `npm run bench -- x [--quick]`\n *\n * What it does.\n */\nimport a from "b";\n';
    expect(leadingDocComment(src)).toBe('`npm run bench -- x [--quick]`\n\nWhat it does.');
  });

  it('is undefined where the module starts with code', () => {
    expect(leadingDocComment('const a = 1;\n/** later */\n')).toBeUndefined();
  });
});

// The compiled entry point (`npm test` builds first).
const main = new URL('../dist/bench/main.js', import.meta.url);

describe('npm run bench -- NAME with bad options', () => {
  it('prints the usage for --help and runs nothing', () => {
    const r = spawnSync(process.execPath, [main.pathname, 'codec', '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('npm run bench -- codec');
    expect(r.stdout).not.toContain('## codec');
  });

  it('answers an unknown option with one line and exit code 2', () => {
    const r = spawnSync(process.execPath, [main.pathname, 'e2e', '--no-such-option'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain("bench e2e: Unknown option '--no-such-option'");
  });

  it("answers a bad value found by the bench's own validation with one line and exit code 2", () => {
    const r = spawnSync(process.execPath, [main.pathname, 'broker', '--server', 'nats'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('bench broker: --server nats runs with --reference only');
  });

  it('lists the reference options of bench broker in its --help', () => {
    const r = spawnSync(process.execPath, [main.pathname, 'broker', '--help'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('--server nats');
    expect(r.stdout).toContain('--reference-burst-ms');
  });

  it('answers an unknown benchmark with exit code 2', () => {
    const r = spawnSync(process.execPath, [main.pathname, 'nope'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('unknown benchmark nope; known: broker');
  });
});
