/**
 * `node dist/bench/report-profile.js FILE.cpuprofile [...] [--top 15]`: where the time goes in
 * V8 CPU profiles (from `--cpu-prof` runs of the benchmarks): self time by function and by area
 * (our code by folder, each dependency, Node internals, GC, idle), as Markdown tables. A
 * sampling heap profile (`FILE.heapprofile`, from `--heap-prof`) gets the same tables in bytes
 * allocated, by the function that allocated them.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Which part of the process a frame belongs to. */
export function areaOf(url: string, functionName: string): string {
  if (url === '') {
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(program)') return 'V8 / native (program)';
    return `native: ${functionName || '(anonymous)'}`;
  }
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/')[0]}`;
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm !== null) return `dep: ${nm[1]}`;
  const ours = /\/dist\/((?:src|bench)\/[^/]+)/.exec(url);
  if (ours !== null) return ours[1]!.replace(/\.js$/, '');
  return url;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  busyMs: number;
  byArea: { area: string; ms: number; share: number }[];
  byFunction: { fn: string; ms: number; share: number }[];
  /** Time in each function and what it called (each function once per sample). */
  inclusive: { fn: string; ms: number; share: number }[];
}

export interface SummarizeOptions {
  top: number;
  /** Only the samples taken in [fromMs, toMs) after the profile's start. */
  fromMs?: number;
  toMs?: number;
  /**
   * Charge every sample the profile's median interval instead of the time since the previous
   * sample. On a loaded machine a process preempted in the middle of a function gets one sample
   * when it runs again, and by time that sample is charged the whole preemption (wall time, not
   * CPU); by count each sample weighs the same.
   */
  bySamples?: boolean;
}

function fnName(n: ProfileNode): string {
  const { functionName, url, lineNumber } = n.callFrame;
  return `${functionName || '(anonymous)'} ${url === '' ? '' : `${basename(url)}:${lineNumber + 1}`}`.trim();
}

export function summarizeProfile(file: string, opts: SummarizeOptions): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  /** The sampled stacks (leaf node id) and their weights in µs, for inclusive times. */
  const sampled: [number, number][] = [];
  if (p.samples !== undefined && p.timeDeltas !== undefined) {
    const deltas = p.timeDeltas;
    const sorted = deltas.slice(1).sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const from = (opts.fromMs ?? 0) * 1000;
    const to = (opts.toMs ?? Number.POSITIVE_INFINITY) * 1000;
    let t = 0;
    // timeDeltas[i] is the time before sample i; charge it to the sample's node.
    for (let i = 0; i < p.samples.length; i++) {
      t += deltas[i] ?? 0;
      if (t < from || t >= to) continue;
      const id = p.samples[i]!;
      const us = opts.bySamples === true ? median : (deltas[i + 1] ?? 0);
      self.set(id, (self.get(id) ?? 0) + us);
      sampled.push([id, us]);
    }
  } else {
    const per =
      (p.endTime - p.startTime) /
      Math.max(
        1,
        p.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0),
      );
    for (const n of p.nodes) {
      self.set(n.id, (n.hitCount ?? 0) * per);
      sampled.push([n.id, (n.hitCount ?? 0) * per]);
    }
  }
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const n of p.nodes) {
    const us = self.get(n.id) ?? 0;
    if (us === 0) continue;
    total += us;
    const { functionName, url } = n.callFrame;
    const area = areaOf(url, functionName);
    if (area === 'idle') idle += us;
    areas.set(area, (areas.get(area) ?? 0) + us);
    const fn = fnName(n);
    fns.set(fn, (fns.get(fn) ?? 0) + us);
  }
  const inclusive = new Map<string, number>();
  for (const [leaf, us] of sampled) {
    if (us === 0 || byId.get(leaf)?.callFrame.functionName === '(idle)') continue;
    const seen = new Set<string>();
    for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id);
      if (n === undefined || n.callFrame.functionName === '(root)') continue;
      const fn = fnName(n);
      if (seen.has(fn)) continue;
      seen.add(fn);
      inclusive.set(fn, (inclusive.get(fn) ?? 0) + us);
    }
  }
  const busy = total - idle;
  const rank = (m: Map<string, number>, skipIdle: boolean) =>
    [...m]
      .filter(([k]) => !skipIdle || (k !== 'idle' && k !== '(idle)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, opts.top);
  const share = ([fn, us]: [string, number]) => ({ fn, ms: us / 1000, share: us / busy });
  return {
    file,
    totalMs: total / 1000,
    busyMs: busy / 1000,
    byArea: rank(areas, true).map(([area, us]) => ({ area, ms: us / 1000, share: us / busy })),
    byFunction: rank(fns, true).map(share),
    inclusive: rank(inclusive, true).map(share),
  };
}

interface HeapProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapProfileNode[];
}

/** Bytes allocated by area and by function in a sampling heap profile (`.heapprofile`). */
export function summarizeHeapProfile(file: string, top: number): HeapProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { head: HeapProfileNode };
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  const stack = [p.head];
  for (let n = stack.pop(); n !== undefined; n = stack.pop()) {
    stack.push(...n.children);
    if (n.selfSize === 0) continue;
    total += n.selfSize;
    const { functionName, url, lineNumber } = n.callFrame;
    const area = areaOf(url, functionName);
    areas.set(area, (areas.get(area) ?? 0) + n.selfSize);
    const fn =
      `${functionName || '(anonymous)'} ${url === '' ? '' : `${basename(url)}:${lineNumber + 1}`}`.trim();
    fns.set(fn, (fns.get(fn) ?? 0) + n.selfSize);
  }
  const rank = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, bytes]) => ({ name, bytes, share: bytes / Math.max(1, total) }));
  return { file, totalBytes: total, byArea: rank(areas), byFunction: rank(fns) };
}

export interface HeapProfileSummary {
  file: string;
  totalBytes: number;
  byArea: { name: string; bytes: number; share: number }[];
  byFunction: { name: string; bytes: number; share: number }[];
}

export function heapProfileMarkdown(s: HeapProfileSummary): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  const kb = (b: number) => (b / 1024).toFixed(0);
  return [
    `**${basename(s.file)}**: ${kb(s.totalBytes)} KiB allocated (sampled).`,
    '',
    '| area | KiB | share |',
    '|---|---|---|',
    ...s.byArea.map((a) => `| ${a.name} | ${kb(a.bytes)} | ${pct(a.share)} |`),
    '',
    '| function | KiB | share |',
    '|---|---|---|',
    ...s.byFunction.map((f) => `| \`${f.name}\` | ${kb(f.bytes)} | ${pct(f.share)} |`),
    '',
  ].join('\n');
}

export function profileMarkdown(s: ProfileSummary, inclusive = false): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  return [
    `**${basename(s.file)}**: ${s.busyMs.toFixed(0)} ms busy of ${s.totalMs.toFixed(0)} ms profiled.`,
    '',
    '| area | self ms | share of busy |',
    '|---|---|---|',
    ...s.byArea.map((a) => `| ${a.area} | ${a.ms.toFixed(0)} | ${pct(a.share)} |`),
    '',
    '| function | self ms | share of busy |',
    '|---|---|---|',
    ...s.byFunction.map((f) => `| \`${f.fn}\` | ${f.ms.toFixed(0)} | ${pct(f.share)} |`),
    '',
    ...(inclusive
      ? [
          '| function, with what it calls | ms | share of busy |',
          '|---|---|---|',
          ...s.inclusive.map((f) => `| \`${f.fn}\` | ${f.ms.toFixed(0)} | ${pct(f.share)} |`),
          '',
        ]
      : []),
  ].join('\n');
}

const USAGE = `usage: node dist/bench/report-profile.js FILE.cpuprofile|FILE.heapprofile [...]
  [--top 15] [--from-s S] [--to-s S] [--by-samples] [--inclusive]

Where the time goes in V8 CPU profiles (self time by area and by function, Markdown), or the
bytes allocated in sampling heap profiles. CPU profiles only:
  --from-s, --to-s  only the samples in that span (seconds after the profile's start): the
                    steady state of a benchmark, without its start-up and shutdown
  --by-samples      each sample weighs the median interval (default: the time since the one
                    before, which on a loaded machine charges a preempted function the wall
                    time it was off the CPU)
  --inclusive       also each function's time with what it calls
`;

if (process.argv[1]?.endsWith('report-profile.js')) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: 'string', default: '15' },
      'from-s': { type: 'string' },
      'to-s': { type: 'string' },
      'by-samples': { type: 'boolean', default: false },
      inclusive: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const seconds = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) {
      process.stderr.write(`--${name} must be a number of seconds ≥ 0\n`);
      process.exit(2);
    }
    return n * 1000;
  };
  const top = Number(values.top);
  if (positionals.length === 0 || !Number.isInteger(top) || top < 1) {
    process.stderr.write(USAGE);
    process.exit(2);
  }
  const opts = {
    top,
    fromMs: seconds('from-s', values['from-s']),
    toMs: seconds('to-s', values['to-s']),
    bySamples: values['by-samples'],
  };
  for (const f of positionals) {
    process.stdout.write(
      f.endsWith('.heapprofile')
        ? `${heapProfileMarkdown(summarizeHeapProfile(f, top))}\n`
        : `${profileMarkdown(summarizeProfile(f, opts), values.inclusive)}\n`,
    );
  }
}
