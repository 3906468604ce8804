/**
 * Keeps docs/architecture.md true to the tree: every file it names exists, every folder under
 * src/ is in its layout, and every `docs/architecture.md "Section"` cited in a comment names one
 * of its headings.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const doc = readFileSync(join(root, 'docs', 'architecture.md'), 'utf8');

/** `src/a/{b,c}.ts` → `src/a/b.ts`, `src/a/c.ts`. */
function expand(path: string): string[] {
  const m = /^(.*)\{([^}]*)\}(.*)$/.exec(path);
  if (m === null) return [path];
  return m[2]!.split(',').flatMap((alt) => expand(`${m[1]}${alt}${m[3]}`));
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

describe('docs/architecture.md', () => {
  it('names only files and folders that exist', () => {
    const named = [...doc.matchAll(/`((?:src|proto|bench|test|docs|examples|scripts)\/[^`\s]*)`/g)]
      .map((m) => m[1]!.replace(/[:,]$/, ''))
      .flatMap(expand);
    expect(named.length).toBeGreaterThan(40);
    const missing = named.filter((p) => !existsSync(join(root, p)));
    expect(missing).toEqual([]);
  });

  it('lists every folder under src/ in its layout', () => {
    const layout = doc.split('## Parts and the direction of dependencies')[1]?.split('\n## ')[0];
    const folders = readdirSync(join(root, 'src')).filter((n) =>
      statSync(join(root, 'src', n)).isDirectory(),
    );
    expect(folders.filter((f) => !layout?.includes(`src/${f}/`))).toEqual([]);
  });

  it('has every section that a comment in src/ cites', () => {
    const headings = new Set([...doc.matchAll(/^#{2,3} (.+)$/gm)].map((m) => m[1]!.trim()));
    const cited: string[] = [];
    for (const file of files(join(root, 'src'))) {
      if (!file.endsWith('.ts') || file.includes(`${join('src', 'gen')}`)) continue;
      const text = readFileSync(file, 'utf8').replace(/\n\s*\*\s*/g, ' ');
      for (const m of text.matchAll(/docs\/architecture\.md "([^"]+)"/g)) {
        if (!headings.has(m[1]!)) cited.push(`${relative(root, file)}: "${m[1]}"`);
      }
    }
    expect(cited).toEqual([]);
  });

  it('is what comments cite, not a design file outside the repository', () => {
    const stale = files(join(root, 'src'))
      .filter((f) => f.endsWith('.ts') && !f.includes(join('src', 'gen')))
      .filter((f) => /\bDESIGN\b/.test(readFileSync(f, 'utf8')))
      .map((f) => relative(root, f));
    expect(stale).toEqual([]);
  });
});
