/**
 * `npm run bench -- [NAME ...]`: runs the named benchmarks (all when none is named) and prints
 * their figures. Each benchmark is a module in this folder registered in `BENCHES`.
 * `npm run bench -- NAME --help` prints the benchmark's usage (its module's leading comment);
 * an unknown or malformed option is a one-line error and exit code 2, not a stack trace.
 */
import { readFileSync } from 'node:fs';
import { leadingDocComment, UsageError } from './usage.js';

type Bench = { description: string; run: (args: string[]) => Promise<void> };

/** Benchmark name → its module in this folder and the module's export. */
const BENCHES: Record<string, { module: string; load: () => Promise<Bench> }> = {
  broker: { module: 'broker', load: async () => (await import('./broker.js')).brokerBench },
  brokers: { module: 'brokers', load: async () => (await import('./brokers.js')).brokersBench },
  'client-push': {
    module: 'client-push',
    load: async () => (await import('./client-push.js')).clientPushBench,
  },
  'h2-client': {
    module: 'h2-client',
    load: async () => (await import('./h2-client.js')).h2ClientBench,
  },
  codec: { module: 'codec', load: async () => (await import('./codec.js')).codecBench },
  consensus: {
    module: 'consensus',
    load: async () => (await import('./consensus.js')).consensusBench,
  },
  e2e: { module: 'e2e', load: async () => (await import('./e2e.js')).e2eBench },
  fanout: {
    module: 'fanout-nats',
    load: async () => (await import('./fanout-nats.js')).fanoutBench,
  },
  floor: { module: 'floor', load: async () => (await import('./floor.js')).floorBench },
  'flags-file': {
    module: 'flags-file',
    load: async () => (await import('./flags-file.js')).flagsFileBench,
  },
  scale: { module: 'scale', load: async () => (await import('./scale.js')).scaleBench },
  sdk: { module: 'sdk', load: async () => (await import('./sdk.js')).sdkBench },
};

/** Node's `parseArgs` rejects an option with an error whose code starts with this. */
const PARSE_ARGS_ERROR = 'ERR_PARSE_ARGS_';

function isUsageError(err: unknown): err is Error {
  if (err instanceof UsageError) return true;
  if (!(err instanceof Error)) return false;
  const code: unknown = (err as Error & { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith(PARSE_ARGS_ERROR);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  // `npm run bench -- --quick`: no name, so every benchmark, each with the options.
  const named = args[0] !== undefined && !args[0].startsWith('-');
  const names = named ? [args[0]!] : Object.keys(BENCHES);
  const rest = named ? args.slice(1) : args;
  for (const n of names) {
    const entry = BENCHES[n];
    if (entry === undefined) {
      console.error(`unknown benchmark ${n}; known: ${Object.keys(BENCHES).join(', ')}`);
      process.exitCode = 2;
      return;
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      const file = new URL(`./${entry.module}.js`, import.meta.url);
      console.log(leadingDocComment(readFileSync(file, 'utf8')) ?? `no usage text for ${n}`);
      continue;
    }
    const bench = await entry.load();
    console.log(`\n## ${n}: ${bench.description}\n`);
    try {
      await bench.run(rest);
    } catch (err) {
      if (!isUsageError(err)) throw err;
      console.error(`bench ${n}: ${err.message} (npm run bench -- ${n} --help)`);
      process.exitCode = 2;
      return;
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
