import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { openConsensus } from '../consensus/index.js';

/**
 * `persist-pubsub demo`: the main job a newcomer runs first. For now it exercises the Consensus
 * store: a writer appends versions by compare-and-set while a second writer races it, and the
 * resulting history is shown to be linear.
 */
export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run the demo on the embedded default Consensus')
    .option('--versions <n>', 'versions each writer tries to commit', '100')
    .action(async (opts: { versions: string }) => {
      const versions = Number(opts.versions);
      if (!Number.isSafeInteger(versions) || versions < 1) {
        throw new Error(`--versions must be a positive integer, got ${opts.versions}`);
      }
      // The embedded default: a SQLite file, here a throwaway one.
      const dir = mkdtempSync(join(tmpdir(), 'persist-pubsub-demo-'));
      const path = join(dir, 'consensus.db');
      const consensus = await openConsensus(`sqlite:${path}`);
      const key = 's00000000-0000-0000-0000-000000000000';
      let mismatches = 0;
      const writer = async (name: string) => {
        let committed = 0;
        while (committed < versions) {
          const head = await consensus.head(key);
          const expected = head?.seqno ?? null;
          const next = { seqno: (expected ?? -1n) + 1n, data: new TextEncoder().encode(name) };
          if ((await consensus.compareAndSet(key, expected, next)) === 'committed') committed++;
          else mismatches++;
        }
      };
      let history: { seqno: bigint }[];
      try {
        await Promise.all([writer('a'), writer('b')]);
        history = await consensus.scan(key, 0n, 100_000);
      } finally {
        await consensus.close();
        rmSync(dir, { recursive: true, force: true });
      }
      const linear =
        history.length === 2 * versions && history.every((v, i) => v.seqno === BigInt(i));
      console.log(
        `demo: ${history.length} versions committed by 2 writers to the ${consensus.backend} ` +
          `Consensus ${path} (now removed), ${mismatches} lost races, ` +
          `history ${linear ? 'linear' : 'NOT LINEAR'}`,
      );
      if (!linear) process.exitCode = 1;
    });
}
