/**
 * What users and the container image get (issue 15, item 5), tested without Docker or the
 * network:
 * - `npm pack` ships the compiled library and CLI (dist/src), the .proto files, README and
 *   package.json, and nothing else: no dist/bench or dist/examples (they import
 *   devDependencies), no tests or test support;
 * - every bare import in the shipped code is a dependency (or a Node builtin), so nothing needs
 *   a devDependency at run time, including lazily loaded backends;
 * - installed with --omit=dev into an empty project, its `persist-pubsub broker` starts and a
 *   program there that imports the package by name commits and reads through it;
 * - the Dockerfile's stages, paths, user, entrypoint and ports agree with the package and with
 *   examples/kubernetes/broker.yaml.
 *
 * Offline install: this machine has no npm registry cache, so the test does what `npm ci
 * --omit=dev` does from already-fetched packages: the packed tarball is extracted as
 * node_modules/persist-pubsub, the production dependency tree (`npm ls --omit=dev --all
 * --parseable`, the same tree `--omit=dev` installs) is copied from this repo's node_modules,
 * better-sqlite3 with its native build included, and the bin is linked as npm links it. The
 * project sits outside the repo, so nothing resolves from the repo's node_modules. (With a
 * registry, `npm install --omit=dev ./persist-pubsub-0.1.0.tgz` in an empty folder does the
 * same; README "Operating it".)
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { type CliRun, ensureBuilt, ROOT, runCli, spawnBroker } from './support/run-cli.js';

interface PackageJson {
  name: string;
  version: string;
  bin: Record<string, string>;
  files: string[];
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as PackageJson;
const work = mkdtempSync(join(tmpdir(), 'pp-package-'));
const app = join(work, 'app');
const installed = join(app, 'node_modules', pkg.name);
let packed: string[] = [];
const runs: CliRun[] = [];

beforeAll(() => {
  ensureBuilt();
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const [info] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
  packed = (info?.files ?? []).map((f) => f.path);

  // The empty project, and the package installed into it without devDependencies.
  mkdirSync(installed, { recursive: true });
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }),
  );
  execFileSync('tar', [
    'xzf',
    join(work, info?.filename ?? ''),
    '-C',
    installed,
    '--strip-components=1',
  ]);
  const tree = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
    .trim()
    .split('\n')
    .slice(1);
  const rootModules = join(ROOT, 'node_modules');
  for (const dir of tree) {
    cpSync(dir, join(app, 'node_modules', relative(rootModules, dir)), {
      recursive: true,
      // Nested node_modules are entries of their own in the tree.
      filter: (src) => src === dir || !relative(dir, src).split('/').includes('node_modules'),
    });
  }
  mkdirSync(join(app, 'node_modules', '.bin'));
  for (const [name, target] of Object.entries(pkg.bin)) {
    chmodSync(join(installed, target), 0o755);
    symlinkSync(join('..', pkg.name, target), join(app, 'node_modules', '.bin', name));
  }
}, 180_000);

afterAll(() => {
  for (const r of runs) if (r.child.exitCode === null) r.child.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

/** Every file under `dir`, relative to it. */
function walk(dir: string, base = dir): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p, base) : [relative(base, p)];
  });
}

describe('the npm package', () => {
  it('ships the library, the CLI and the protos, and no bench, examples or tests', () => {
    for (const f of [
      'package.json',
      'README.md',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/cli/main.js',
      'dist/src/cli/demo-worker.js',
      'proto/mz_persist_client/internal/service/pubsub.proto',
    ]) {
      expect(packed, f).toContain(f);
    }
    for (const target of Object.values(pkg.bin)) expect(packed).toContain(target);
    const stray = packed.filter(
      (p) =>
        !(p.startsWith('dist/src/') || p.startsWith('proto/')) &&
        !['package.json', 'README.md', 'LICENSE'].includes(p),
    );
    expect(stray).toEqual([]);
    expect(packed.filter((p) => /\.test(-support|-suite)?\./.test(p))).toEqual([]);
  });

  it('imports nothing at run time but its dependencies and Node builtins', () => {
    const allowed = new Set([...Object.keys(pkg.dependencies), ...builtinModules]);
    const bad: string[] = [];
    for (const file of walk(join(installed, 'dist', 'src')).filter((f) => f.endsWith('.js'))) {
      const text = readFileSync(join(installed, 'dist', 'src', file), 'utf8');
      const specs = [
        ...text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*['"]([^'"]+)['"]/gm),
        ...text.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm),
        ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
      ];
      for (const m of specs) {
        const spec = m[1] as string;
        if (spec.startsWith('.') || spec.startsWith('node:')) continue;
        const name = spec.startsWith('@')
          ? spec.split('/').slice(0, 2).join('/')
          : spec.split('/')[0];
        if (!allowed.has(name as string)) bad.push(`${file}: ${spec}`);
      }
    }
    expect(bad).toEqual([]);
    // The project really has no devDependencies (some, like @types/node, are also pulled in by
    // production dependencies; these are not).
    for (const dev of ['typescript', 'vitest', 'yaml', 'hdr-histogram-js', 'fast-check']) {
      expect(pkg.devDependencies[dev], dev).toBeDefined();
      expect(existsSync(join(app, 'node_modules', dev)), dev).toBe(false);
    }
  });

  it('installed with --omit=dev, its broker starts and serves a program that imports it', async () => {
    const bin = join(app, 'node_modules', '.bin', 'persist-pubsub');
    const help = await runCli(['--help'], { cli: bin, cwd: app });
    expect(help.code).toBe(0);
    for (const c of ['broker', 'demo', 'shards', 'connections', 'keys', 'inspect', 'tail']) {
      expect(help.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    }
    const { run, ...listening } = await spawnBroker([], { cli: bin, cwd: app });
    runs.push(run);
    const client = join(app, 'client.mjs');
    cpSync(join(ROOT, 'test', 'fixtures', 'package-client.mjs'), client);
    const out = execFileSync(
      process.execPath,
      [client, `grpc://${listening.grpc}`, `sqlite:${join(app, 'c.db')}`, listening.admin],
      { cwd: app, encoding: 'utf8', timeout: 30_000 },
    );
    const result = JSON.parse(out) as { seqno: string; upper: string; viaPubsub: number };
    expect(result).toMatchObject({ seqno: '3', upper: '3' });
    expect(result.viaPubsub).toBeGreaterThanOrEqual(1);
    run.child.kill('SIGTERM');
    expect((await run.exit).code).toBe(0);
  }, 60_000);
});

describe('the Dockerfile', () => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
  const stages: string[][] = [];
  for (const l of lines) {
    if (/^FROM\s/i.test(l)) stages.push([]);
    stages.at(-1)?.push(l);
  }
  const final = stages.at(-1) ?? [];
  const json = (instr: string) => {
    const l = final.find((x) => x.startsWith(`${instr} `));
    return JSON.parse(l?.slice(instr.length + 1) ?? 'null') as string[];
  };

  it('is multi-stage on node:20-slim, installs with npm ci --omit=dev, runs as non-root', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s[0]).toMatch(/^FROM node:20-slim\b/);
    expect(text).toMatch(/npm ci --omit=dev/);
    expect(final).toContain('USER node');
    expect(final.some((l) => /^COPY --from=deps \/app\/node_modules /.test(l))).toBe(true);
  });

  it('copies only files that exist and the build context keeps', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'));
    for (const s of stages) {
      for (const l of s.filter((x) => /^COPY\s/.test(x) && !/--from=/.test(x))) {
        const sources = l.split(/\s+/).slice(1, -1);
        for (const src of sources) {
          expect(existsSync(join(ROOT, src)), src).toBe(true);
          expect(ignored, src).not.toContain(src);
        }
      }
    }
    // What the build stage compiles is what tsconfig.build.json needs for dist/src.
    expect(text).toMatch(/tsc -p tsconfig\.build\.json/);
  });

  it("runs the package's bin from where the packed files land, with flags the broker has", async () => {
    const workdir = final.find((l) => l.startsWith('WORKDIR '))?.slice(8);
    expect(workdir).toBe('/app');
    const entry = json('ENTRYPOINT');
    expect(entry[0]).toBe('node');
    const script = relative(workdir as string, entry[1] as string);
    expect(script).toBe(pkg.bin['persist-pubsub']);
    expect(existsSync(join(installed, script))).toBe(true);
    const cmd = json('CMD');
    expect(cmd[0]).toBe('broker');
    const help = await runCli(['broker', '--help']);
    for (const a of cmd.slice(1)) expect(help.stdout).toContain(`${a.split('=')[0]} <`);
    const exposed = final
      .find((l) => l.startsWith('EXPOSE '))
      ?.split(/\s+/)
      .slice(1);
    expect(exposed).toEqual(cmd.slice(1).map((a) => a.slice(a.lastIndexOf(':') + 1)));
  });

  it('builds the image the Kubernetes example runs', () => {
    const [, deployment] = parseAllDocuments(
      readFileSync(join(ROOT, 'examples', 'kubernetes', 'broker.yaml'), 'utf8'),
    ).map(
      (d) =>
        d.toJS() as {
          spec: {
            template: { spec: { containers: Array<{ image: string; command?: string[] }> } };
          };
        },
    );
    const container = deployment?.spec.template.spec.containers[0];
    expect(container?.image).toBe(`${pkg.name}:${pkg.version}`);
    expect(text).toContain(`docker build -t ${pkg.name}:${pkg.version} .`);
    // The manifest relies on the image's entrypoint.
    expect(container?.command).toBeUndefined();
  });
});
