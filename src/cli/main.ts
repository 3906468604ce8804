#!/usr/bin/env node
/**
 * The `persist-pubsub` command line. Each subcommand lives in its own file and registers itself
 * on the program here; this file only wires them together and maps errors to exit codes.
 */
import { Command } from 'commander';
import { registerBroker } from './broker.js';
import { registerConsensusCommands } from './consensus-commands.js';
import { registerDemo } from './demo.js';
import { registerListings } from './listings.js';
import { registerTail } from './tail.js';

const program = new Command()
  .name('persist-pubsub')
  .description('Persist pubsub: a sidecar broker and tools for seqno-tagged shard state diffs')
  .showHelpAfterError();

registerDemo(program);
registerBroker(program);
registerListings(program);
registerConsensusCommands(program);
registerTail(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`persist-pubsub: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
