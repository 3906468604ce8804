import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFakeClock } from './fake-clock.js';
import {
  type FlagsFileContent,
  MAX_FLAGS_FILE_BYTES,
  parseFlagsFile,
  watchFlagsFileContent,
} from './flags-file.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'util-flags-'));
  dirs.push(dir);
  return dir;
}

/** Resolves once `predicate` holds, checking after every turn of the event loop (no timers). */
async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise<void>((r) => setImmediate(r));
}

/** A watcher on the fake clock that records what it reports; `poll()` runs one timed poll. */
function watch(path: string, initialText?: string) {
  const seen: FlagsFileContent[] = [];
  const clock = createFakeClock();
  const w = watchFlagsFileContent({
    path,
    initialText,
    onChange: (c) => seen.push(c),
    pollIntervalMs: 50,
    clock,
  });
  return {
    seen,
    w,
    clock,
    /** One poll of the timer, then waits until it has reported `n` changes in all. */
    async pollUntil(n: number) {
      await clock.advance(50);
      await until(() => seen.length >= n);
    },
  };
}

describe('parseFlagsFile', () => {
  it('returns the entries of a JSON object, unvalidated', () => {
    expect(parseFlagsFile('{"a": true, "b": 5}')).toEqual({ ok: true, values: { a: true, b: 5 } });
    expect(parseFlagsFile('{}')).toEqual({ ok: true, values: {} });
  });

  it.each([
    ['{', 'not JSON'],
    ['[]', 'JSON object'],
    ['null', 'JSON object'],
    ['"x"', 'JSON object'],
    [`{"x": "${'é'.repeat(MAX_FLAGS_FILE_BYTES / 2)}"}`, 'larger than 65536 bytes'],
  ])('rejects %j', (text, why) => {
    const r = parseFlagsFile(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain(why);
  });
});

describe('watchFlagsFileContent', () => {
  it('reports the content synchronously at start, unless it is the initial text', () => {
    const dir = tempDir();
    const path = join(dir, 'flags.json');
    writeFileSync(path, '{"a": 1}');
    const a = watch(path);
    expect(a.seen).toEqual([{ kind: 'text', text: '{"a": 1}' }]);
    const b = watch(path, '{"a": 1}');
    expect(b.seen).toEqual([]);
    const c = watch(join(dir, 'none.json'));
    expect(c.seen).toEqual([{ kind: 'missing' }]);
    for (const x of [a, b, c]) x.w.close();
  });

  it('the timed poll reports each change once: in place, renamed, removed, empty, unreadable', async () => {
    const dir = tempDir();
    const path = join(dir, 'flags.json');
    writeFileSync(path, '{}');
    const t = watch(path, '{}');
    writeFileSync(path, '{"a": true}');
    await t.pollUntil(1);
    expect(t.seen).toEqual([{ kind: 'text', text: '{"a": true}' }]);
    writeFileSync(`${path}.tmp`, '{"a": false}');
    renameSync(`${path}.tmp`, path);
    await t.pollUntil(2);
    rmSync(path);
    await t.pollUntil(3);
    writeFileSync(path, '');
    await t.pollUntil(4);
    rmSync(path);
    mkdirSync(path); // stat works, reading does not
    await t.pollUntil(5);
    expect(t.seen.slice(1, 4)).toEqual([
      { kind: 'text', text: '{"a": false}' },
      { kind: 'missing' },
      { kind: 'empty' },
    ]);
    expect(t.seen[4]).toMatchObject({ kind: 'unreadable', error: { code: 'EISDIR' } });
    t.w.close();
    expect(t.clock.pending()).toBe(0);
  });

  it('follows a symlink swapped to a new target (a Kubernetes ConfigMap update)', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'v1'));
    mkdirSync(join(dir, 'v2'));
    writeFileSync(join(dir, 'v1', 'flags.json'), '{"v": 1}');
    writeFileSync(join(dir, 'v2', 'flags.json'), '{"v": 2}');
    symlinkSync('v1', join(dir, '..data'));
    symlinkSync('..data/flags.json', join(dir, 'flags.json'));
    const t = watch(join(dir, 'flags.json'));
    expect(t.seen).toEqual([{ kind: 'text', text: '{"v": 1}' }]);
    // The kubelet's atomic swap: a new symlink renamed over `..data`.
    symlinkSync('v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    await t.pollUntil(2);
    expect(t.seen[1]).toEqual({ kind: 'text', text: '{"v": 2}' });
    t.w.close();
  });

  it('check() reads even when the stat looks unchanged, but reports only a real change', async () => {
    const dir = tempDir();
    const path = join(dir, 'flags.json');
    writeFileSync(path, '{"a": 1}');
    const t = watch(path);
    await t.w.check();
    expect(t.seen).toHaveLength(1);
    writeFileSync(path, '{"a": 2}');
    await t.w.check();
    expect(t.seen).toEqual([
      { kind: 'text', text: '{"a": 1}' },
      { kind: 'text', text: '{"a": 2}' },
    ]);
    t.w.close();
  });

  it('after close nothing is reported and no timer is left', async () => {
    const dir = tempDir();
    const path = join(dir, 'flags.json');
    writeFileSync(path, '{}');
    const t = watch(path, '{}');
    expect(t.clock.pending()).toBe(1);
    t.w.close();
    t.w.close();
    expect(t.clock.pending()).toBe(0);
    writeFileSync(path, '{"a": 1}');
    await t.w.check();
    await t.clock.advance(1000);
    expect(t.seen).toEqual([]);
  });
});
