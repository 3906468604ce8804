import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { BrokerFlags } from '../../broker/index.js';
import { createFakeClock } from '../../util/index.js';
import { parseBrokerFlagsFile, watchBrokerFlagsFile } from './flags-file.js';

function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { logger, lines };
}

const dirs: string[] = [];
const closers: Array<() => void> = [];

/** Resolves once `predicate` holds, checking after every turn of the event loop (no timers). */
async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise<void>((r) => setImmediate(r));
}
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

describe('parseBrokerFlagsFile', () => {
  it('accepts known boolean flags and an empty object', () => {
    expect(parseBrokerFlagsFile('{"forwardPushes": false}')).toEqual({
      ok: true,
      flags: { forwardPushes: false },
    });
    expect(parseBrokerFlagsFile('{}')).toEqual({ ok: true, flags: {} });
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
    const r = parseBrokerFlagsFile(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain(why);
  });
});

describe('watchBrokerFlagsFile', () => {
  const base: BrokerFlags = { forwardPushes: true };

  it('the poll sees a change written in place and one renamed into place; rejects an invalid one', async () => {
    const path = tempFile('{}');
    const applied: BrokerFlags[] = [];
    const { logger, lines } = captureLogger();
    // Resolves at the next thing the watcher does (a log line: applied, rejected, unreadable).
    const nextLine = () => {
      const n = lines.length;
      return until(() => lines.length > n);
    };
    const clock = createFakeClock();
    const w = watchBrokerFlagsFile({
      path,
      base,
      initialText: '{}',
      apply: (f) => applied.push(f),
      logger,
      pollIntervalMs: 100,
      clock,
    });
    closers.push(() => w.close());
    const poll = async () => {
      const line = nextLine();
      await clock.advance(100);
      await line;
    };

    writeFileSync(path, '{"forwardPushes": false}');
    await poll();
    expect(applied).toHaveLength(1);
    expect(applied[0]).toEqual({ forwardPushes: false });

    writeFileSync(path, '{"forwardPushes": oops');
    await poll();
    const rejected = lines.find((l) => String(l.msg).startsWith('flags file rejected'));
    expect(rejected?.level).toBe(50);
    expect(rejected?.path).toBe(path);
    expect(applied).toHaveLength(1);

    const tmp = `${path}.tmp`;
    writeFileSync(tmp, '{}');
    renameSync(tmp, path);
    await poll();
    expect(applied).toHaveLength(2);
    expect(applied[1]).toEqual({ forwardPushes: true });
  });

  it('reload() reads on demand, ignores unchanged text, and keeps flags when the file goes', async () => {
    const path = tempFile('{"forwardPushes": false}');
    const applied: BrokerFlags[] = [];
    const { logger, lines } = captureLogger();
    const w = watchBrokerFlagsFile({
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

  it('applies the first change the poll sees on its clock, and none before', async () => {
    const path = tempFile('{}');
    const applied: BrokerFlags[] = [];
    const clock = createFakeClock();
    let seen: () => void = () => {};
    const w = watchBrokerFlagsFile({
      path,
      base,
      initialText: '{}',
      apply: (f) => {
        applied.push(f);
        seen();
      },
      logger: captureLogger().logger,
      pollIntervalMs: 50,
      clock,
    });
    closers.push(() => w.close());
    writeFileSync(path, '{"forwardPushes": false}');
    await clock.advance(49);
    expect(applied).toEqual([]);
    const polled = new Promise<void>((resolve) => {
      seen = resolve;
    });
    await clock.advance(1);
    await polled;
    expect(applied).toEqual([{ forwardPushes: false }]);
    w.close();
    expect(clock.pending()).toBe(0);
  });

  it('reads a changed file at start that differs from the start-up text', () => {
    const path = tempFile('{"forwardPushes": false}');
    const applied: BrokerFlags[] = [];
    const w = watchBrokerFlagsFile({
      path,
      base,
      initialText: '{}',
      apply: (f) => applied.push(f),
      logger: captureLogger().logger,
      clock: createFakeClock(),
    });
    w.close();
    expect(applied).toEqual([{ forwardPushes: false }]);
  });
});
