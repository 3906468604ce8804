import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { BrokerFlags } from '../../broker/index.js';
import { parseFlagsFile, watchFlagsFile } from './flags-file.js';

function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { logger, lines };
}

/** Waits for `predicate`, checking every 10 ms, failing after `timeoutMs`. */
async function until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const dirs: string[] = [];
const closers: Array<() => void> = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'pp-flags-'));
  dirs.push(dir);
  const path = join(dir, 'flags.json');
  writeFileSync(path, text);
  return path;
}

describe('parseFlagsFile', () => {
  it('accepts known boolean flags and an empty object', () => {
    expect(parseFlagsFile('{"forwardPushes": false}')).toEqual({
      ok: true,
      flags: { forwardPushes: false },
    });
    expect(parseFlagsFile('{}')).toEqual({ ok: true, flags: {} });
  });

  it.each([
    ['{', 'not JSON'],
    ['[]', 'JSON object'],
    ['null', 'JSON object'],
    ['true', 'JSON object'],
    ['{"forwardPushes": "no"}', 'forwardPushes must be a boolean'],
    ['{"forwardPush": true}', 'unknown flag "forwardPush"'],
    [`{"x": "${'a'.repeat(70_000)}"}`, 'larger than'],
  ])('rejects %j', (text, why) => {
    const r = parseFlagsFile(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain(why);
  });
});

describe('watchFlagsFile', () => {
  const base: BrokerFlags = { forwardPushes: true };

  it('applies a change written in place and one renamed into place; rejects an invalid one', async () => {
    const path = tempFile('{}');
    const applied: BrokerFlags[] = [];
    const { logger, lines } = captureLogger();
    const w = watchFlagsFile({
      path,
      base,
      initialText: '{}',
      apply: (f) => applied.push(f),
      logger,
      pollIntervalMs: 100,
    });
    closers.push(() => w.close());

    writeFileSync(path, '{"forwardPushes": false}');
    await until(() => applied.length === 1);
    expect(applied[0]).toEqual({ forwardPushes: false });

    writeFileSync(path, '{"forwardPushes": oops');
    await until(() => lines.some((l) => String(l.msg).startsWith('flags file rejected')));
    const rejected = lines.find((l) => String(l.msg).startsWith('flags file rejected'));
    expect(rejected?.level).toBe(50);
    expect(rejected?.path).toBe(path);
    expect(applied).toHaveLength(1);

    const tmp = `${path}.tmp`;
    writeFileSync(tmp, '{}');
    renameSync(tmp, path);
    await until(() => applied.length === 2);
    expect(applied[1]).toEqual({ forwardPushes: true });
  });

  it('reload() reads on demand, ignores unchanged text, and keeps flags when the file goes', async () => {
    const path = tempFile('{"forwardPushes": false}');
    const applied: BrokerFlags[] = [];
    const { logger, lines } = captureLogger();
    const w = watchFlagsFile({
      path,
      base,
      initialText: '{"forwardPushes": false}',
      apply: (f) => applied.push(f),
      logger,
      pollIntervalMs: 60_000,
    });
    closers.push(() => w.close());
    await w.reload();
    expect(applied).toEqual([]);
    rmSync(path);
    await w.reload();
    expect(applied).toEqual([]);
    expect(lines.some((l) => l.msg === 'flags file unreadable; keeping the flags in force')).toBe(
      true,
    );
    w.close();
    writeFileSync(path, '{"forwardPushes": true}');
    await w.reload();
    expect(applied).toEqual([]);
  });
});
