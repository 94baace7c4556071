import { readFileSync } from 'node:fs';
import { generate } from 'otplib';
import { apiToken, expect, expectAccessible, expectNoHorizontalScroll, signIn, test, watchCsp } from './fixtures.ts';

const DESKTOP = { width: 1024, height: 800 };

test('an admin steps up, creates a user, sets their quota, disables them, and finds it all in the audit log', async ({ page, server, browser, request, cspViolations }) => {
  await page.setViewportSize(DESKTOP);
  await page.goto('/signin');
  await signIn(page, server.steward);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();

  // No second factor yet: the console says what is missing and where to set it up.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Admin' }).click();
  await expect(page.getByRole('heading', { name: 'Two-factor authentication needed' })).toBeVisible();
  await expect(page.getByRole('link', { name: 'Set up two-factor authentication' })).toHaveAttribute('href', '/account#two-factor');

  // 2FA turned on elsewhere: this browser's session has not verified a code, so the API asks for step-up.
  const auth = { authorization: `Bearer ${await apiToken(request, server, server.steward)}` };
  const setup = await (await request.post(`${server.url}/api/auth/totp/setup`, { headers: auth })).json();
  const now = Math.floor(Date.now() / 1000);
  const enabled = await request.post(`${server.url}/api/auth/totp/enable`, {
    headers: auth,
    data: { code: await generate({ secret: setup.secret, epoch: now - 30 }), password: server.steward.password },
  });
  expect(enabled.status(), await enabled.text()).toBe(200);

  await page.reload();
  const dialog = page.getByRole('dialog', { name: "Confirm it's you" });
  await expect(dialog).toBeVisible();
  await expectAccessible(page, 'step-up dialog');
  await dialog.getByLabel('Authentication code').fill('000000');
  await dialog.getByRole('button', { name: 'Confirm' }).click();
  await expect(dialog.getByRole('alert')).toContainText("That code didn't work");
  await dialog.getByLabel('Authentication code').fill(await generate({ secret: setup.secret, epoch: Math.floor(Date.now() / 1000) }));
  await dialog.getByRole('button', { name: 'Confirm' }).click();
  await expect(dialog).toBeHidden();

  // Dashboard: figures and charts, drawn in the page.
  await expect(page.getByRole('heading', { name: 'Dashboard', level: 1 })).toBeVisible();
  await expect(page.getByRole('heading', { name: 'Queue depth' })).toBeVisible();
  await expect(page.getByRole('img', { name: 'Jobs per hour (24 h), by status' })).toBeVisible();
  await expect(page.locator('.plot canvas').first()).toBeVisible();
  await expect(page.getByRole('region', { name: 'Renderers' }).getByText('healthy').first()).toBeVisible();
  await page.getByText('Per day (14 days)').click();
  await page.getByText('Type', { exact: true }).click();
  await expect(page.getByRole('img', { name: 'Jobs per day (14 days), by type' })).toBeVisible();
  await expectAccessible(page, 'dashboard');
  await expectNoHorizontalScroll(page, 'dashboard at 1024 px');

  // Users: create one with a one-time password.
  await page.getByRole('navigation', { name: 'Administration' }).getByRole('link', { name: 'Users' }).click();
  await expect(page.getByRole('heading', { name: 'Users', level: 1 })).toBeVisible();
  await page.getByRole('button', { name: 'New user' }).click();
  await page.getByLabel('E-mail', { exact: true }).fill('newcomer@celforge.test');
  await page.getByRole('button', { name: 'Create user' }).click();
  await expect(page.getByText('newcomer@celforge.test can sign in now.')).toBeVisible();
  const oneTime = (await page.getByTestId('one-time-password').textContent())!.trim();
  expect(oneTime).toMatch(/^[A-Za-z0-9_-]{24}$/);
  await expectAccessible(page, 'users');
  await expectNoHorizontalScroll(page, 'users at 1024 px');

  // The newcomer signs in in a browser of their own.
  const theirs = await browser.newContext({ baseURL: server.url, viewport: DESKTOP });
  const them = await theirs.newPage();
  watchCsp(them, cspViolations);
  await them.goto('/signin');
  await signIn(them, { email: 'newcomer@celforge.test', password: oneTime });
  await expect(them.getByRole('heading', { name: 'Create' })).toBeVisible();
  await expect(them.getByRole('link', { name: 'Admin' })).toHaveCount(0);

  // A quota of one job a day, then the newcomer's second job is refused with the reason.
  await page.getByRole('button', { name: 'Manage newcomer@celforge.test' }).click();
  const manage = page.getByRole('region', { name: 'Manage newcomer@celforge.test' });
  await manage.getByLabel('Jobs per day (UTC)').fill('1');
  await manage.getByRole('button', { name: 'Save' }).click();
  await expect(manage.getByRole('status')).toHaveText('Quota saved.');
  await expectAccessible(page, 'user detail');

  await them.getByLabel('Prompt', { exact: true }).fill('a paper boat on a puddle after rain');
  await them.getByRole('button', { name: 'Generate' }).click();
  await expect(them.getByText('Queued.')).toBeVisible();
  await them.getByLabel('Prompt', { exact: true }).fill('a second paper boat, sailing on');
  await them.getByRole('button', { name: 'Generate' }).click();
  await expect(them.getByText(/You've made 1 job today, your daily limit/)).toBeVisible();

  // Their sessions, listed; disabling ends them, and their open browser is signed out on its next action.
  await expect(manage.getByRole('button', { name: /^End Chromium on Linux/ })).toBeVisible();
  await manage.getByRole('button', { name: 'Disable' }).click();
  await expect(manage.getByText('disabled', { exact: true })).toBeVisible();
  await expect(manage.getByText('No open sessions.')).toBeVisible();
  await them.getByRole('link', { name: 'My jobs' }).click();
  await expect(them.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await expect(them.getByText('Your session has ended. Sign in again to continue.')).toBeVisible();
  await theirs.close();

  // Jobs: the newcomer's job with its owner; the console cancels someone else's running video.
  const tabs = { authorization: `Bearer ${await apiToken(request, server, server.users.tabs)}` };
  const video = await request.post(`${server.url}/api/anime/generate`, { headers: tabs, data: { prompt: 'a long night train through snow', type: 'video', frames: 120, width: 256, height: 256 } });
  expect(video.status(), await video.text()).toBe(202);
  await page.getByRole('navigation', { name: 'Administration' }).getByRole('link', { name: 'All jobs' }).click();
  await expect(page.getByRole('row', { name: /a paper boat on a puddle after rain.*newcomer@celforge\.test/ })).toBeVisible();
  const train = page.getByRole('row', { name: /a long night train through snow.*tabs@celforge\.test/ });
  await train.getByRole('button', { name: /^Cancel/ }).click();
  await expect(page.getByText('Job canceled.')).toBeVisible();
  await expect(train.getByText('canceled', { exact: true })).toBeVisible();
  const after = await request.get(`${server.url}/api/anime/jobs/${(await video.json()).job_id}`, { headers: tabs });
  expect((await after.json()).status).toBe('canceled');
  await expectAccessible(page, 'jobs');
  await expectNoHorizontalScroll(page, 'jobs at 1024 px');

  // Audit log: what this admin did, each row expandable, the chain verified.
  await page.getByRole('navigation', { name: 'Administration' }).getByRole('link', { name: 'Audit log' }).click();
  await page.getByLabel('Actor (e-mail or id)').fill(server.steward.email);
  await page.getByLabel('Action').fill('admin.');
  await page.getByRole('button', { name: 'Apply' }).click();
  const table = page.getByRole('table');
  await expect(table.getByText('admin.user.disable')).toBeVisible();
  await expect(table.getByText('admin.user.quota')).toBeVisible();
  await page.getByLabel('Action').fill('user.create');
  await page.getByRole('button', { name: 'Apply' }).click();
  await expect(table.getByRole('row', { name: /user\.create/ })).toHaveCount(1);
  await table.getByRole('button', { name: /^Details of row/ }).click();
  await expect(table.getByText('"role": "user"')).toBeVisible();
  await page.getByRole('button', { name: 'Verify now' }).click();
  await expect(page.getByRole('status').filter({ hasText: /Verified up to row \d+/ })).toBeVisible();
  await expectAccessible(page, 'audit log');
  await expectNoHorizontalScroll(page, 'audit log at 1024 px');

  const download = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Export JSON lines' }).click();
  const file = await download;
  expect(file.suggestedFilename()).toMatch(/^celforge-audit-.*\.jsonl$/);
  const lines = readFileSync(await file.path(), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  expect(lines.map((row) => row.action)).toEqual(['user.create']);
});

test('a person who is not an administrator sees no admin navigation, and /admin is not found', async ({ page, server }) => {
  await page.goto('/signin');
  await signIn(page, server.users.other);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await expect(page.getByRole('link', { name: 'Admin' })).toHaveCount(0);
  for (const path of ['/admin', '/admin/users', '/admin/audit', '/admin/jobs']) {
    await page.goto(path);
    await expect(page.getByRole('heading', { name: 'Not found' })).toBeVisible();
    await expect(page.getByRole('navigation', { name: 'Administration' })).toHaveCount(0);
  }
});
