/**
 * `npm run bench -- codec [--ops N]`: the cost per message of the wire codec (`src/protocol`),
 * in CPU ns/op and bytes allocated/op, for the messages every process handles: a push as the broker
 * decodes it (route and forward: shard id, seqno, raw push_diff), as a client decodes it (also
 * the diff view and the shard id check), a push encoded by a client, and the broker's forwarded
 * frame. One real-shaped message: a 37-byte shard id, a 256-byte diff, both timestamps.
 *
 * Bytes/op is the heap growth over the timed loop with a young generation large enough that no
 * GC runs inside it (the child is started with `--expose-gc` and a 256 MiB semi-space; a loop
 * during which a GC ran says so instead of printing a wrong figure).
 */
import { spawnSync } from 'node:child_process';
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import {
  decodeMessage,
  encodeForward,
  encodePush,
  type PushMessage,
  parseShardId,
} from '../src/protocol/index.js';

const FLAGS = ['--expose-gc', '--min-semi-space-size=256', '--max-semi-space-size=256'];

export interface CodecCase {
  name: string;
  op: () => unknown;
}

/**
 * Runs `op` `ops` times after a warm-up; returns CPU ns/op (this thread's user + system time, so
 * a busy machine that deschedules us does not count) and bytes/op (NaN if a GC ran).
 */
export function measure(c: CodecCase, ops: number): { ns: number; bytes: number; gcs: number } {
  for (let i = 0; i < Math.min(ops, 200_000); i++) c.op();
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  let gcs = 0;
  const obs = new PerformanceObserver((list) => {
    gcs += list.getEntries().length;
  });
  obs.observe({ entryTypes: ['gc'] });
  const sink: unknown[] = new Array(1);
  const h0 = process.memoryUsage().heapUsed;
  const t0 = process.cpuUsage();
  for (let i = 0; i < ops; i++) sink[0] = c.op();
  const t = process.cpuUsage(t0);
  const h1 = process.memoryUsage().heapUsed;
  obs.disconnect();
  const cpuNs = (t.user + t.system) * 1000;
  return { ns: cpuNs / ops, bytes: gcs === 0 ? (h1 - h0) / ops : Number.NaN, gcs };
}

export function printCases(cases: CodecCase[], ops: number): void {
  console.log(`| case | ns/op | bytes/op |\n|---|---|---|`);
  for (const c of cases) {
    const r = measure(c, ops);
    const bytes = Number.isNaN(r.bytes) ? `n/a (${r.gcs} GCs)` : r.bytes.toFixed(0);
    console.log(`| ${c.name} | ${r.ns.toFixed(0)} | ${bytes} |`);
  }
}

export const SHARD_ID = 's00000000-0000-0000-0000-000000000000';
export const DIFF = new Uint8Array(256).map((_, i) => i);
export const NOW_MS = 1_764_580_000_123.25;

function cases(): CodecCase[] {
  const pushFrame = encodePush(SHARD_ID, 1_234_567n, DIFF, NOW_MS, NOW_MS, false);
  const pushed = decodeMessage(pushFrame) as PushMessage;
  return [
    {
      name: 'broker: decode push (shard id, seqno, raw push_diff)',
      op: () => {
        const m = decodeMessage(pushFrame);
        return m.kind === 'push' ? parseShardId(m.shardId).ok && m.pushDiffLength : 0;
      },
    },
    {
      name: 'client: decode push (+ diff view, timestamps)',
      op: () => {
        const m = decodeMessage(pushFrame);
        if (m.kind !== 'push' || !parseShardId(m.shardId).ok) return undefined;
        return m.diff;
      },
    },
    {
      name: 'client: encode push (framed)',
      op: () => encodePush(SHARD_ID, 1_234_567n, DIFF, NOW_MS, NOW_MS, true),
    },
    {
      name: 'broker: encode forwarded frame',
      op: () => encodeForward(pushed.pushDiff, NOW_MS, true),
    },
  ];
}

export const codecBench = {
  description: 'wire codec cost per message (ns/op, bytes/op)',
  async run(args: string[]): Promise<void> {
    const i = args.indexOf('--ops');
    const ops = i >= 0 ? Number(args[i + 1]) : 500_000;
    if (!Number.isInteger(ops) || ops < 1) throw new Error('--ops must be an integer >= 1');
    if (!process.execArgv.includes('--expose-gc')) {
      const self = fileURLToPath(import.meta.url);
      const r = spawnSync(process.execPath, [...FLAGS, self, '--ops', String(ops)], {
        stdio: 'inherit',
      });
      if (r.status !== 0) throw new Error(`codec bench child exited ${r.status}`);
      return;
    }
    printCases(cases(), ops);
  },
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  codecBench.run(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
