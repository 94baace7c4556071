import { apiToken, expect, expectAccessible, expectNoHorizontalScroll, signIn, test, watchCsp } from './fixtures.ts';

test('sign in as the admin, generate an image and a video, watch both finish, publish, sign out, see it in the gallery', async ({ page, server }) => {
  const response = await page.goto('/');
  // The studio page carries the studio's CSP, and index.html is never cached.
  const headers = response!.headers();
  expect(headers['content-security-policy']).toContain("script-src 'self'");
  expect(headers['content-security-policy']).toContain("frame-ancestors 'none'");
  expect(headers['cache-control']).toBe('no-store');

  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await expectAccessible(page, 'sign in');
  await signIn(page, server.admin);

  // Create is the landing page.
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await expect(page.getByText('Running or waiting: 0 of 3')).toBeVisible();
  await expectAccessible(page, 'create');
  const prompt = page.getByLabel('Prompt', { exact: true });
  await prompt.fill('a lighthouse on a cliff at dawn, gulls, soft light');
  await expect(page.getByText('50 / 500')).toBeVisible();
  await page.getByRole('button', { name: 'Generate' }).click();
  await expect(page.getByRole('status').getByText('Queued.')).toBeVisible();
  await expect(page.getByText(/Generation budget: \d+ of 2000 units left/)).toBeVisible();

  await page.getByRole('radio', { name: 'Video' }).check();
  await prompt.fill('a paper boat drifting down a rainy street');
  await page.getByLabel('Steps').fill('12');
  await page.getByRole('button', { name: 'Generate' }).click();
  await expect(page.getByRole('status').getByText('Queued.')).toBeVisible();

  // My jobs: both, newest first, live until done.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My jobs' }).click();
  await expect(page.getByRole('heading', { name: 'My jobs' })).toBeVisible();
  const rows = page.getByRole('listitem').filter({ has: page.getByRole('link', { name: /paper boat|lighthouse/ }) });
  await expect(rows).toHaveCount(2);
  await expect(rows.first()).toContainText('paper boat');
  // A running job shows its progress as a progressbar with a value.
  const bar = page.getByRole('progressbar').first();
  await expect(bar).toBeVisible();
  await expect(bar).toHaveAttribute('aria-valuenow', /^\d+$/);
  await expectAccessible(page, 'my jobs');
  for (const name of ['paper boat', 'lighthouse']) {
    await expect(rows.filter({ hasText: name }).getByText('succeeded', { exact: true })).toBeVisible({ timeout: 40_000 });
  }
  await expect(page.getByRole('progressbar')).toHaveCount(0);

  // The viewer: open the image, publish it.
  await page.getByRole('link', { name: /lighthouse/ }).click();
  await expect(page.getByRole('img', { name: /lighthouse/ })).toBeVisible();
  await expect(page.getByRole('link', { name: 'Download' })).toHaveAttribute('download', /\.(webp|png|jpg)$/);
  await expectAccessible(page, 'viewer');
  await page.getByRole('radio', { name: /^Public/ }).check();
  await page.getByRole('button', { name: 'Publish' }).click();
  await expect(page.getByText('Published to Public.')).toBeVisible();

  // The video plays in the viewer too.
  await page.goto('/jobs');
  await page.getByRole('link', { name: /paper boat/ }).click();
  await expect(page.getByRole('heading', { name: /paper boat/ })).toBeVisible();
  await expect(page.getByText('Frames per second')).toBeVisible();

  // Sign out ends the session; the gallery shows the work to anyone.
  await page.locator('summary').click();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByText('You have signed out.')).toBeVisible();
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await page.getByRole('link', { name: 'Browse the public gallery' }).click();
  await expect(page.getByRole('heading', { name: 'Gallery' })).toBeVisible();
  await expect(page.getByRole('button', { name: /lighthouse/ })).toBeVisible();
  await expectAccessible(page, 'gallery');
});

test('signs in with an authenticator code when the account has 2FA', async ({ page, server, request }) => {
  const { generate } = await import('otplib');
  const account = server.users.twofactor;
  const token = await apiToken(request, server, account);
  const auth = { authorization: `Bearer ${token}` };
  const setup = await (await request.post(`${server.url}/api/auth/totp/setup`, { headers: auth })).json();
  const now = Math.floor(Date.now() / 1000);
  // Enrol with the previous step's code, so the current one is still unused for the sign-in.
  const enabled = await request.post(`${server.url}/api/auth/totp/enable`, { headers: auth, data: { code: await generate({ secret: setup.secret, epoch: now - 30 }), password: account.password } });
  expect(enabled.status()).toBe(200);

  await page.goto('/signin');
  await page.getByLabel('Email').fill(account.email);
  await page.getByLabel('Password').fill(account.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await expect(page.getByRole('heading', { name: 'Two-factor authentication' })).toBeVisible();
  await expectAccessible(page, 'sign in, code step');
  await page.getByLabel('Authentication code').fill('000000');
  await page.getByRole('button', { name: 'Verify' }).click();
  await expect(page.getByRole('alert')).toContainText("That code didn't work");
  await page.getByLabel('Authentication code').fill(await generate({ secret: setup.secret, epoch: Math.floor(Date.now() / 1000) }));
  await page.getByRole('button', { name: 'Verify' }).click();
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
});

test('a wrong password says what to do without saying which field was wrong', async ({ page, server }) => {
  await page.goto('/signin');
  await signIn(page, { email: server.users.maker.email, password: 'not the right password' });
  await expect(page.getByRole('alert')).toHaveText("That didn't work. Check your email and password and try again.");
  await signIn(page, { email: 'nobody@celforge.test', password: 'not the right password' });
  await expect(page.getByRole('alert')).toHaveText("That didn't work. Check your email and password and try again.");
});

test('a session revoked from another browser signs the first one out on its next action', async ({ page, browser, server }) => {
  const account = server.users.revoked;
  await page.goto('/');
  await signIn(page, account);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();

  const other = await browser.newContext({ baseURL: server.url });
  const second = await other.newPage();
  const violations: string[] = [];
  watchCsp(second, violations);
  await second.goto('/');
  await signIn(second, account);
  await expect(second.getByRole('heading', { name: 'Create' })).toBeVisible();
  // The second browser ends every other session of this account.
  const token = await apiTokenFromPage(second);
  const answer = await other.request.delete(`${server.url}/api/auth/sessions`, { headers: { authorization: `Bearer ${token}` } });
  expect(answer.status(), await answer.text()).toBe(200);
  expect((await answer.json()).revoked).toBeGreaterThanOrEqual(1);
  await other.close();
  expect(violations).toEqual([]);

  // The first browser's next action meets the revoked session.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My jobs' }).click();
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await expect(page.getByText('Your session has ended. Sign in again to continue.')).toBeVisible();
});

/** An access token of the page's own session (the studio keeps its token out of reach; the cookie gives another). */
async function apiTokenFromPage(page: import('@playwright/test').Page): Promise<string> {
  return page.evaluate(async () => {
    const response = await fetch('/api/auth/browser/refresh', { method: 'POST', headers: { 'x-celforge-studio': '1' } });
    return ((await response.json()) as { access_token: string }).access_token;
  });
}

test("another user's job id in the URL shows not found", async ({ page, server, request }) => {
  const token = await apiToken(request, server, server.users.other);
  const created = await request.post(`${server.url}/api/anime/generate`, { headers: { authorization: `Bearer ${token}` }, data: { prompt: 'a private sketch', type: 'image' } });
  expect(created.status()).toBe(202);
  const { job_id } = await created.json();

  await page.goto(`/jobs/${job_id}`);
  await signIn(page, server.users.maker);
  await expect(page).toHaveURL(new RegExp(`/jobs/${job_id}$`));
  await expect(page.getByRole('heading', { name: 'Not found' })).toBeVisible();
  await expect(page.getByText("This job doesn't exist, or it isn't yours.")).toBeVisible();
  await expect(page.getByText('a private sketch')).toHaveCount(0);
  await expectAccessible(page, 'not found');
});

test('a reload signs in silently, and two tabs show the same jobs', async ({ page, context, server }) => {
  await page.goto('/');
  await signIn(page, server.users.tabs);
  await page.getByLabel('Prompt', { exact: true }).fill('two tabs, one queue');
  // A double click sends one job (same Idempotency-Key).
  await page.getByRole('button', { name: 'Generate' }).dblclick();
  await expect(page.getByRole('status').getByText(/Queued\.|This is the job you already sent\./)).toBeVisible();

  await page.goto('/jobs');
  const second = await context.newPage();
  await second.goto('/jobs');
  // Both tabs reload at once: their refreshes take turns, so neither ends the session.
  await Promise.all([page.reload(), second.reload()]);
  for (const tab of [page, second]) {
    await expect(tab.getByRole('heading', { name: 'My jobs' })).toBeVisible();
    await expect(tab.getByRole('link', { name: 'two tabs, one queue' })).toHaveCount(1);
    await expect(tab.getByRole('list', { name: 'My jobs' }).getByText('succeeded', { exact: true })).toBeVisible({ timeout: 30_000 });
  }
  await second.close();
});

test('a 360×740 phone has no horizontal scroll on any screen (dark theme, axe too)', async ({ browser, server, request }) => {
  const token = await apiToken(request, server, server.users.other);
  const made = await request.post(`${server.url}/api/anime/generate`, {
    headers: { authorization: `Bearer ${token}` },
    data: { prompt: 'a very long prompt about a quiet harbour town at dusk with lanterns, fishing boats, wet cobblestones, distant hills and a single cat watching the sea', type: 'image', width: 768, height: 512 },
  });
  const { job_id } = await made.json();
  const context = await browser.newContext({ baseURL: server.url, viewport: { width: 360, height: 740 }, colorScheme: 'dark', isMobile: true, hasTouch: true });
  const page = await context.newPage();
  const violations: string[] = [];
  watchCsp(page, violations);
  await page.goto('/signin');
  await expectNoHorizontalScroll(page, 'sign in');
  await signIn(page, server.users.other);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await expectNoHorizontalScroll(page, 'create');
  await expectAccessible(page, 'create (phone, dark)');
  await page.goto('/jobs');
  await expect(page.getByRole('link', { name: /quiet harbour/ })).toBeVisible();
  await expectNoHorizontalScroll(page, 'my jobs');
  await expectAccessible(page, 'my jobs (phone, dark)');
  await page.goto(`/jobs/${job_id}`);
  await expect(page.getByRole('heading', { name: /quiet harbour/ })).toBeVisible();
  await expect(page.getByRole('link', { name: 'Download' })).toBeVisible({ timeout: 30_000 });
  await expectNoHorizontalScroll(page, 'viewer');
  await expectAccessible(page, 'viewer (phone, dark)');
  await page.getByRole('button', { name: 'Zoom in' }).click();
  await expectNoHorizontalScroll(page, 'viewer zoomed');
  await page.goto('/gallery');
  await expect(page.getByRole('heading', { name: 'Gallery' })).toBeVisible();
  await expectNoHorizontalScroll(page, 'gallery');
  await expectAccessible(page, 'gallery (phone, dark)');
  await page.goto('/no/such/page');
  await expect(page.getByRole('heading', { name: 'Not found' })).toBeVisible();
  await expectNoHorizontalScroll(page, 'not found');
  expect(violations).toEqual([]);
  await context.close();
});

test('a refusal for a full quota is said in words, with what to do', async ({ page, server, request }) => {
  const token = await apiToken(request, server, server.users.busy);
  const headers = { authorization: `Bearer ${token}` };
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const made = await request.post(`${server.url}/api/anime/generate`, { headers, data: { prompt: `long video ${i}`, type: 'video', frames: 120, width: 256, height: 256 } });
    expect(made.status()).toBe(202);
    ids.push((await made.json()).job_id);
  }
  await page.goto('/');
  await signIn(page, server.users.busy);
  await expect(page.getByText('Running or waiting: 3 of 3')).toBeVisible();
  await page.getByLabel('Prompt', { exact: true }).fill('one more, please');
  await page.getByRole('button', { name: 'Generate' }).click();
  await expect(page.getByRole('alert')).toHaveText(
    'You already have 3 jobs running or waiting, your limit. Wait for one to finish, or cancel one in My jobs.',
  );
  // Cancel one from the queue: the next Generate goes through.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My jobs' }).click();
  await page.getByRole('listitem').filter({ hasText: 'long video 2' }).getByRole('button', { name: 'Cancel' }).click();
  await expect(page.getByRole('listitem').filter({ hasText: 'long video 2' }).getByText('canceled', { exact: true })).toBeVisible();
  for (const id of ids) await request.post(`${server.url}/api/anime/jobs/${id}/cancel`, { headers });
});
