import { defineConfig } from 'vitest/config';

/**
 * Redis clients closed while their server is deliberately unreachable (the fail-closed tests point
 * at 127.0.0.1:1) or mid-reconnect reject a connection wait inside the queue library at teardown.
 * Only those two exact errors are let through; any other unhandled error still fails the run.
 */
const TEARDOWN_NOISE = [/^connect ECONNREFUSED 127\.0\.0\.1:1$/, /^Connection is closed\.$/];

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 90_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: ['default'],
    onUnhandledError: (error) => (TEARDOWN_NOISE.some((pattern) => pattern.test(error.message ?? '')) ? false : undefined),
  },
});
