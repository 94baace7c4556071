import { expect, signIn, startServer, test } from './fixtures.ts';

/** Access tokens live 3 s here (a 5 s clock tolerance on top): long enough to load a screen, short enough to expire mid-session. */
const TTL_SECONDS = 3;
const TOLERANCE_SECONDS = 5;

let own: Awaited<ReturnType<typeof startServer>>;
test.beforeAll(async () => {
  own = await startServer({ env: { CELFORGE_ACCESS_TOKEN_TTL: `${TTL_SECONDS}s` } });
});
test.afterAll(async () => own?.stop());

test('an access token that expires mid-session is refreshed once and the request retried, unseen', async ({ page }) => {
  const server = own.server;
  await page.goto(`${server.url}/signin`);
  await signIn(page, server.users.maker);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  const signedInAt = Date.now();

  // From here on: every refresh the page makes, and what each API call answered.
  const refreshes: number[] = [];
  const answers: string[] = [];
  page.on('response', (response) => {
    const url = new URL(response.url());
    if (url.pathname === '/api/auth/browser/refresh') refreshes.push(response.status());
    else if (url.pathname.startsWith('/api/anime/jobs')) answers.push(`${response.request().method()} ${url.pathname} ${response.status()}`);
  });

  // Let the token expire (past the verifier's tolerance too) while the page sits there.
  await page.waitForTimeout(Math.max(0, (TTL_SECONDS + TOLERANCE_SECONDS + 1) * 1000 - (Date.now() - signedInAt)));

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My jobs' }).click();
  await expect(page.getByRole('heading', { name: 'My jobs' })).toBeVisible();
  await expect(page.getByText('No jobs yet')).toBeVisible();
  // The expired token met a 401, one refresh renewed it, the same request went again and succeeded.
  expect(answers).toEqual(['GET /api/anime/jobs 401', 'GET /api/anime/jobs 200']);
  expect(refreshes).toEqual([200]);
  await expect(page.getByRole('heading', { name: 'Sign in' })).toHaveCount(0);
  await expect(page.getByText('Your session has ended')).toHaveCount(0);

  // A write after the next expiry works the same way, and makes exactly one job.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Create' }).click();
  await page.getByLabel('Prompt', { exact: true }).fill('a cat asleep on a warm windowsill');
  await page.waitForTimeout((TTL_SECONDS + TOLERANCE_SECONDS + 1) * 1000);
  refreshes.length = 0;
  const submitted: number[] = [];
  page.on('response', (response) => {
    if (new URL(response.url()).pathname === '/api/anime/generate') submitted.push(response.status());
  });
  await page.getByRole('button', { name: 'Generate' }).click();
  await expect(page.getByRole('status').getByText('Queued.')).toBeVisible();
  expect(submitted).toEqual([401, 202]);
  expect(refreshes).toEqual([200]);
});
