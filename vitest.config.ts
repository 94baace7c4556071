import { defineConfig } from 'vitest/config';

// CI asks for a JSON report next to the console one (.ci/run counts the results from it).
const json = process.env.CELFORGE_VITEST_JSON;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 90_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: json ? ['default', 'json'] : ['default'],
    ...(json && { outputFile: json }),
  },
});
