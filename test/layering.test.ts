/**
 * The dependency direction of docs/architecture.md "Parts and the direction of dependencies",
 * checked on every import in src/: a folder imports only the folders below it, and another
 * folder only through its `index.ts` (generated code in src/gen/ and `*.test-support.ts` helpers
 * excepted; a test may also import the generated schema it checks a codec against).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

const src = join(import.meta.dirname, '..', 'src');

/** What each folder may import. */
const ALLOWED: Record<string, readonly string[]> = {
  protocol: [],
  util: [],
  consensus: ['protocol', 'util'],
  'shard-state': ['consensus', 'protocol', 'util', 'gen'],
  broker: ['protocol', 'util', 'gen'],
  client: ['broker', 'consensus', 'shard-state', 'protocol', 'util', 'gen'],
  cli: ['broker', 'client', 'consensus', 'shard-state', 'protocol', 'util', 'gen'],
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

/** Every relative import of every source file under src/ (generated code aside). */
function imports(): { file: string; from: string; to: string; target: string }[] {
  const out: { file: string; from: string; to: string; target: string }[] = [];
  for (const file of files(src)) {
    const rel = relative(src, file);
    if (!file.endsWith('.ts') || rel.startsWith(`gen${sep}`)) continue;
    const from = rel.includes(sep) ? rel.split(sep)[0]! : '.';
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/g)) {
      const target = relative(src, resolve(dirname(file), m[1]!))
        .split(sep)
        .join('/');
      const to = target.includes('/') ? target.split('/')[0]! : '.';
      // test/support helpers are outside src/ and not part of the layering.
      if (to !== from && to !== '..') out.push({ file: relative(src, file), from, to, target });
    }
  }
  return out;
}

describe('the dependency direction', () => {
  const all = imports();

  it('finds the imports it checks', () => {
    expect(all.length).toBeGreaterThan(50);
    expect(Object.keys(ALLOWED).sort()).toEqual(
      readdirSync(src)
        .filter((n) => n !== 'gen' && statSync(join(src, n)).isDirectory())
        .sort(),
    );
  });

  it('points one way: each folder imports only the folders below it', () => {
    const wrong = all
      .filter((i) => i.from !== '.' && !ALLOWED[i.from]?.includes(i.to))
      // A test checks a codec against the generated schema wherever the codec lives.
      .filter((i) => !(i.to === 'gen' && i.file.endsWith('.test.ts')))
      .map((i) => `${i.file} imports ${i.target}`);
    expect(wrong).toEqual([]);
  });

  it("goes through a folder's index.ts", () => {
    const wrong = all
      .filter((i) => i.to !== 'gen' && !i.target.endsWith('/index.js'))
      .filter((i) => !i.target.endsWith('.test-support.js'))
      .map((i) => `${i.file} imports ${i.target}`);
    expect(wrong).toEqual([]);
  });
});
