/**
 * `npm run bench -- [NAME ...]`: runs the named benchmarks (all when none is named) and prints
 * their figures. Each benchmark is a module in this folder registered in `BENCHES`.
 */
type Bench = { description: string; run: (args: string[]) => Promise<void> };

const BENCHES: Record<string, () => Promise<Bench>> = {
  broker: async () => (await import('./broker.js')).brokerBench,
  brokers: async () => (await import('./brokers.js')).brokersBench,
  'client-push': async () => (await import('./client-push.js')).clientPushBench,
  'h2-client': async () => (await import('./h2-client.js')).h2ClientBench,
  codec: async () => (await import('./codec.js')).codecBench,
  consensus: async () => (await import('./consensus.js')).consensusBench,
  e2e: async () => (await import('./e2e.js')).e2eBench,
  fanout: async () => (await import('./fanout-nats.js')).fanoutBench,
  'flags-file': async () => (await import('./flags-file.js')).flagsFileBench,
  scale: async () => (await import('./scale.js')).scaleBench,
  sdk: async () => (await import('./sdk.js')).sdkBench,
};

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  // `npm run bench -- --quick`: no name, so every benchmark, each with the options.
  const named = args[0] !== undefined && !args[0].startsWith('-');
  const names = named ? [args[0]!] : Object.keys(BENCHES);
  const rest = named ? args.slice(1) : args;
  for (const n of names) {
    const load = BENCHES[n];
    if (load === undefined) {
      throw new Error(
        `unknown benchmark ${n}; known: ${Object.keys(BENCHES).join(', ') || 'none yet'}`,
      );
    }
    const bench = await load();
    console.log(`\n## ${n}: ${bench.description}\n`);
    await bench.run(rest);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
