import type { Command } from 'commander';
import { createMemoryConsensus } from '../consensus/index.js';

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
      const consensus = createMemoryConsensus();
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
      await Promise.all([writer('a'), writer('b')]);
      const history = await consensus.scan(key, 0n, 100_000);
      const linear = history.every((v, i) => v.seqno === BigInt(i));
      console.log(
        `demo: ${history.length} versions committed by 2 writers, ${mismatches} lost races, ` +
          `history ${linear ? 'linear' : 'NOT LINEAR'}`,
      );
      await consensus.close();
      if (!linear) process.exitCode = 1;
    });
}
