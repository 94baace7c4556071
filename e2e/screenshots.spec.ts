import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from '@playwright/test';
import { apiToken, expect, signIn, test, type Server } from './fixtures.ts';

/** `npm run screenshots`: every screen, desktop and a 360×740 phone, dark (and Create in light), into docs/screenshots/. */
const OUT = fileURLToPath(new URL('../docs/screenshots/', import.meta.url));

const PROMPTS = [
  'a lighthouse on a cliff at dawn, gulls over a calm sea',
  'a girl with a red umbrella crossing a rainy neon street',
  'a tiny fox asleep under cherry blossoms, soft afternoon light',
  'a floating island village with waterfalls, morning mist',
  'a train through summer fields, cumulus clouds, long shadows',
  'a quiet harbour town at dusk with lanterns and fishing boats',
];

async function seed(server: Server, request: import('@playwright/test').APIRequestContext) {
  const token = await apiToken(request, server, server.users.maker);
  const headers = { authorization: `Bearer ${token}` };
  const ids: string[] = [];
  for (const [i, prompt] of PROMPTS.entries()) {
    const sizes = [
      [768, 512],
      [512, 768],
      [512, 512],
    ][i % 3]!;
    const response = await request.post(`${server.url}/api/anime/generate`, {
      headers,
      data: { prompt, type: i === 4 ? 'video' : 'image', width: i === 4 ? 512 : sizes[0], height: i === 4 ? 288 : sizes[1], seed: 1000 + i * 7919, steps: 12 },
    });
    expect(response.status(), await response.text()).toBe(202);
    ids.push((await response.json()).job_id);
    // the active-jobs quota is 3: let the queue drain as we go
    if (i % 3 === 2) await waitDone(request, server, headers, ids);
  }
  await waitDone(request, server, headers, ids);
  for (const [i, id] of ids.entries()) {
    if (i === 0) continue; // one stays private, for the viewer's Publish panel
    await request.post(`${server.url}/api/anime/jobs/${id}/publish`, { headers, data: { visibility: i % 4 === 1 ? 'members' : 'public' } });
  }
  return { ids, headers };
}

async function waitDone(request: import('@playwright/test').APIRequestContext, server: Server, headers: Record<string, string>, ids: string[]) {
  await expect
    .poll(
      async () => {
        const page = await (await request.get(`${server.url}/api/anime/jobs?limit=100`, { headers })).json();
        return ids.every((id) => page.items.some((job: { job_id: string; status: string }) => job.job_id === id && job.status === 'succeeded'));
      },
      { timeout: 120_000, intervals: [500] },
    )
    .toBe(true);
}

const VIEWPORTS = {
  desktop: { width: 1280, height: 860 },
  phone: { width: 360, height: 740 },
} as const;

async function shoot(page: Page, name: string) {
  await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
  await page.evaluate(() => document.fonts.ready);
  // not networkidle: a live event stream keeps the network busy until its job ends
  await page.waitForFunction(() => [...document.images].every((image) => image.complete || image.loading === 'lazy'));
  await page.screenshot({ path: `${OUT}${name}.png`, fullPage: false });
}

async function session(browser: Browser, server: Server, viewport: keyof typeof VIEWPORTS, colorScheme: 'dark' | 'light' = 'dark') {
  const context = await browser.newContext({ baseURL: server.url, viewport: VIEWPORTS[viewport], colorScheme, deviceScaleFactor: 1, ...(viewport === 'phone' && { isMobile: true, hasTouch: true }) });
  return { context, page: await context.newPage() };
}

test('screenshots of every screen', async ({ browser, server, request }) => {
  test.setTimeout(400_000);
  mkdirSync(OUT, { recursive: true });
  const { ids, headers } = await seed(server, request);
  for (const viewport of ['desktop', 'phone'] as const) {
    const { context, page } = await session(browser, server, viewport);
    await page.goto('/signin');
    await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
    await shoot(page, `${viewport}-sign-in`);
    await signIn(page, server.users.maker);
    await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
    await page.getByLabel('Prompt', { exact: true }).fill('a lighthouse on a cliff at dawn, gulls over a calm sea');
    await expect(page.getByText(/Running or waiting/)).toBeVisible();
    await shoot(page, `${viewport}-create`);
    // a job in progress for the queue shot: a long video, caught while it renders
    await request.post(`${server.url}/api/anime/generate`, {
      headers,
      data: { prompt: 'a comet over snowy mountains, starry night', type: 'video', frames: 120, fps: 12, width: 512, height: 288 },
    });
    await page.goto('/jobs');
    // newest first: the video just sent (the desktop pass's may still be rendering below it)
    const progress = page.getByRole('progressbar').first();
    await expect(progress).toBeVisible();
    await expect(progress).not.toHaveAttribute('aria-valuenow', '0');
    await shoot(page, `${viewport}-my-jobs`);
    await page.goto(`/jobs/${ids[0]}`);
    await expect(page.getByRole('img', { name: /lighthouse/ })).toBeVisible();
    await shoot(page, `${viewport}-viewer`);
    await page.goto('/gallery');
    await expect(page.getByRole('button', { name: /harbour/ })).toBeVisible();
    await shoot(page, `${viewport}-gallery`);
    await page.goto('/jobs/00000000-0000-4000-8000-000000000000');
    await expect(page.getByRole('heading', { name: 'Not found' })).toBeVisible();
    await shoot(page, `${viewport}-not-found`);
    await context.close();
  }
  const light = await session(browser, server, 'desktop', 'light');
  await light.page.goto('/signin');
  await signIn(light.page, server.users.maker);
  await expect(light.page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await shoot(light.page, 'desktop-create-light');
  await light.page.goto('/gallery');
  await expect(light.page.getByRole('button', { name: /harbour/ })).toBeVisible();
  await shoot(light.page, 'desktop-gallery-light');
  await light.context.close();
});

test('screenshots of the account page', async ({ browser, server, request }) => {
  const account = server.users.shots;
  // a lived-in account: sessions on other devices, keys (one used by a script)
  const devices = [
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
  ];
  let token = '';
  for (const userAgent of devices) {
    const login = await request.post(`${server.url}/api/auth/login`, { headers: { 'user-agent': userAgent }, data: account });
    expect(login.status()).toBe(200);
    token = (await login.json()).access_token;
  }
  const auth = { authorization: `Bearer ${token}` };
  for (const [name, scopes] of [
    ['render farm', ['jobs:read', 'jobs:write']],
    ['gallery sync', ['jobs:read', 'gallery:publish']],
  ] as const) {
    const key = await request.post(`${server.url}/api/auth/api-keys`, { headers: auth, data: { name, scopes } });
    expect(key.status()).toBe(201);
    if (name === 'render farm') await request.get(`${server.url}/api/anime/jobs`, { headers: { 'x-api-key': (await key.json()).key } });
  }

  for (const viewport of ['desktop', 'phone'] as const) {
    const { context, page } = await session(browser, server, viewport);
    await page.goto('/signin');
    await signIn(page, account);
    await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
    await page.goto('/account');
    await expect(page.locator('#sessions').getByRole('listitem').first()).toBeVisible();
    await expect(page.locator('#api-keys').getByRole('listitem').first()).toBeVisible();
    await shoot(page, `${viewport}-account`);
    await page.evaluate(() => document.getElementById('sessions')!.scrollIntoView({ block: 'start' }));
    await shoot(page, `${viewport}-account-sessions`);
    await page.getByRole('button', { name: 'Set up two-factor authentication' }).click();
    await expect(page.getByRole('img', { name: 'QR code for your authenticator app' })).toBeVisible();
    await page.evaluate(() => document.getElementById('two-factor')!.scrollIntoView({ block: 'start' }));
    await shoot(page, `${viewport}-account-two-factor`);
    await page.getByRole('button', { name: 'Cancel' }).click();
    const keys = page.locator('#api-keys');
    await keys.getByLabel('Name').fill(viewport === 'desktop' ? 'nightly renders' : 'phone shortcut');
    await keys.getByRole('checkbox', { name: /jobs:write/ }).check();
    await keys.getByRole('button', { name: 'Create key' }).click();
    await expect(page.locator('#created-key')).toBeVisible();
    await page.evaluate(() => document.getElementById('api-keys')!.scrollIntoView({ block: 'start' }));
    await shoot(page, `${viewport}-account-api-key`);
    await context.close();
  }
});

test('screenshots of the admin console', async ({ browser, server, request }) => {
  test.setTimeout(300_000);
  mkdirSync(OUT, { recursive: true });
  const { generate: totp } = await import('otplib');
  // a little history: finished jobs of two people, then one long video left rendering
  for (const account of [server.users.maker, server.users.other]) {
    const headers = { authorization: `Bearer ${await apiToken(request, server, account)}` };
    const ids: string[] = [];
    for (const prompt of PROMPTS.slice(0, 3)) {
      const response = await request.post(`${server.url}/api/anime/generate`, { headers, data: { prompt, type: 'image', width: 512, height: 512, steps: 8 } });
      expect(response.status(), await response.text()).toBe(202);
      ids.push((await response.json()).job_id);
    }
    await waitDone(request, server, headers, ids);
  }
  const otherHeaders = { authorization: `Bearer ${await apiToken(request, server, server.users.other)}` };

  const { context, page } = await session(browser, server, 'desktop');
  await page.goto('/signin');
  await signIn(page, server.steward);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  // 2FA on from elsewhere: this session has not verified a code yet, so the console asks
  const auth = { authorization: `Bearer ${await apiToken(request, server, server.steward)}` };
  const setup = await (await request.post(`${server.url}/api/auth/totp/setup`, { headers: auth })).json();
  const enabled = await request.post(`${server.url}/api/auth/totp/enable`, {
    headers: auth,
    data: { code: await totp({ secret: setup.secret, epoch: Math.floor(Date.now() / 1000) - 30 }), password: server.steward.password },
  });
  expect(enabled.status(), await enabled.text()).toBe(200);
  await page.goto('/admin');
  const dialog = page.getByRole('dialog', { name: "Confirm it's you" });
  await expect(dialog).toBeVisible();
  await shoot(page, 'desktop-admin-step-up');
  await dialog.getByLabel('Authentication code').fill(await totp({ secret: setup.secret, epoch: Math.floor(Date.now() / 1000) }));
  await dialog.getByRole('button', { name: 'Confirm' }).click();
  await expect(page.getByRole('heading', { name: 'Queue depth' })).toBeVisible();
  await expect(page.locator('.plot canvas').first()).toBeVisible();
  await shoot(page, 'desktop-admin-dashboard');

  await page.getByRole('link', { name: 'Users' }).click();
  await page.getByRole('button', { name: `Manage ${server.users.maker.email}` }).click();
  await expect(page.getByRole('region', { name: `Manage ${server.users.maker.email}` }).getByText(/^Now: /)).toBeVisible();
  await shoot(page, 'desktop-admin-users');

  await page.getByRole('link', { name: 'Audit log' }).click();
  await page.getByRole('button', { name: 'Verify now' }).click();
  await expect(page.getByText(/Verified up to row/)).toBeVisible();
  await page.getByLabel('Action').fill('auth.');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByRole('button', { name: /^Details of row/ }).nth(1).click();
  await shoot(page, 'desktop-admin-audit');

  const video = await request.post(`${server.url}/api/anime/generate`, {
    headers: otherHeaders,
    data: { prompt: 'a comet over snowy mountains, starry night', type: 'video', frames: 120, fps: 12, width: 512, height: 288 },
  });
  expect(video.status(), await video.text()).toBe(202);
  await page.getByRole('link', { name: 'All jobs' }).click();
  await expect(page.getByRole('table').getByText('running', { exact: true }).first()).toBeVisible();
  await shoot(page, 'desktop-admin-jobs');
  await context.close();
});
