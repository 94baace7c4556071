import { defineConfig } from '@playwright/test';

/**
 * The studio in Debian's Chromium (never a downloaded browser). Each worker starts its own
 * Celforge server (e2e/fixtures.ts); `npm run screenshots` runs the screenshots project.
 */
export default defineConfig({
  testDir: 'e2e',
  globalSetup: './e2e/global-setup.ts',
  // generous: the flows wait for real renders on a shared machine
  timeout: 180_000,
  expect: { timeout: 15_000 },
  workers: 2,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  // CI asks for a JSON report too (.ci/run counts the results from it).
  reporter: process.env.CELFORGE_PLAYWRIGHT_JSON ? [['list'], ['json', { outputFile: process.env.CELFORGE_PLAYWRIGHT_JSON }]] : [['list']],
  use: {
    browserName: 'chromium',
    launchOptions: { executablePath: process.env.CHROME_PATH ?? '/usr/bin/chromium' },
    trace: 'retain-on-failure',
  },
  projects: [
    { name: 'studio', testIgnore: /screenshots\.spec\.ts/ },
    { name: 'screenshots', testMatch: /screenshots\.spec\.ts/ },
  ],
});
