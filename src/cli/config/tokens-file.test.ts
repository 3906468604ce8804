import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { TokenGrant } from '../../broker/index.js';
import { createFakeClock } from '../../util/index.js';
import { MAX_TOKENS_FILE_BYTES, parseTokensFile, watchTokensFile } from './tokens-file.js';

const dirs: string[] = [];
const closers: Array<() => void> = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'pp-tokens-'));
  dirs.push(dir);
  const path = join(dir, 'tokens.json');
  writeFileSync(path, text);
  return path;
}

const file = (tokens: unknown[]) => JSON.stringify({ tokens });
const reader = { name: 'reader', token: 'tok-r', subscribe: ['s*'] };

describe('parseTokensFile', () => {
  it('accepts a list of tokens, and an empty one', () => {
    expect(parseTokensFile(file([reader]))).toEqual({ ok: true, tokens: [reader] });
    expect(parseTokensFile('{"tokens": []}')).toEqual({ ok: true, tokens: [] });
  });

  it.each([
    ['{', 'not JSON'],
    ['[]', 'expected a JSON object { "tokens": [...] }'],
    ['{}', 'tokens must be an array'],
    ['{"tokens": [], "token": []}', 'unknown field "token"'],
    [file([{ ...reader, subscribe: ['s*x'] }]), 'tokens[0].subscribe[0] "s*x"'],
    [file([reader, { ...reader, name: 'r2' }]), 'tokens[1].token (of r2) is also the token of'],
    [`{"tokens": [], "x": "${'a'.repeat(MAX_TOKENS_FILE_BYTES)}"}`, 'larger than'],
  ])('rejects %j, saying where', (text, why) => {
    const r = parseTokensFile(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain(why);
  });

  it('never puts a token in a message', () => {
    const r = parseTokensFile(file([{ name: 'a', token: 'SeCrEt x' }]));
    expect(!r.ok && r.message).not.toContain('SeCrEt');
  });
});

describe('watchTokensFile', () => {
  function watch(path: string, initialText?: string, apply?: (t: TokenGrant[]) => void) {
    const applied: TokenGrant[][] = [];
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const registry = new Registry();
    const w = watchTokensFile({
      path,
      initialText,
      apply: apply ?? ((t) => applied.push(t)),
      logger,
      registry,
      clock: createFakeClock(),
    });
    closers.push(() => w.close());
    const count = async (result: string) =>
      (
        await registry.getSingleMetric('persist_pubsub_server_auth_tokens_reloads_total')?.get()
      )?.values.find((v) => v.labels.result === result)?.value;
    return { w, applied, lines, count };
  }

  it('applies a changed file; keeps the tokens in force on a bad, missing or refused one', async () => {
    const text = file([reader]);
    const path = tempFile(text);
    const { w, applied, lines, count } = watch(path, text);
    expect(applied).toHaveLength(0); // the start-up text was applied already
    writeFileSync(path, file([{ ...reader, subscribe: [] }]));
    await w.reload();
    expect(applied).toEqual([[{ ...reader, subscribe: [] }]]);
    expect(await count('applied')).toBe(1);

    writeFileSync(path, '{"tokens": [{"name": "x"}]}');
    await w.reload();
    expect(applied).toHaveLength(1);
    expect(await count('rejected')).toBe(1);
    expect(lines.at(-1)).toMatchObject({
      level: 50,
      reason: expect.stringContaining('tokens[0].token'),
    });

    rmSync(path);
    await w.reload();
    expect(await count('unreadable')).toBe(1);
    expect(applied).toHaveLength(1);
  });

  it('a file the broker refuses (apply throws) is counted as rejected', async () => {
    const path = tempFile(file([reader]));
    const { w, count } = watch(path, undefined, () => {
      throw new Error('the single authToken is also a token of the scoped tokens');
    });
    await w.reload();
    expect(await count('rejected')).toBeGreaterThanOrEqual(1);
    expect(await count('applied')).toBe(0);
  });
});
