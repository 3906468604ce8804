import { defineConfig } from 'vitest/config';

// Under CI a JSON report is written too, from which .ci/run prints its closing line.
const ci = process.env.CI === 'true';

export default defineConfig({
  test: {
    include: [
      'src/**/*.test.ts',
      'test/**/*.test.ts',
      'examples/**/*.test.ts',
      'bench/**/*.test.ts',
    ],
    exclude: ['**/node_modules/**', 'dist/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Suites that start OS processes and servers share two cores; keep the pool small.
    pool: 'forks',
    maxWorkers: 2,
    reporters: ci ? ['default', 'json'] : ['default'],
    outputFile: ci ? { json: '.tmp/vitest-report.json' } : {},
  },
});
