import type { BrowserContext, Page } from '@playwright/test';
import { expect, signIn, test } from './fixtures.ts';

const REFRESH_PATH = '/api/auth/browser/refresh';

/** Every status the refresh route answered to these pages. */
function watchRefreshes(pages: Page[]): number[] {
  const statuses: number[] = [];
  for (const page of pages) {
    page.on('response', (response) => {
      if (new URL(response.url()).pathname === REFRESH_PATH) statuses.push(response.status());
    });
  }
  return statuses;
}

async function refreshCookie(context: BrowserContext) {
  const cookie = (await context.cookies()).find((c) => c.name === 'celforge_refresh');
  expect(cookie, 'the refresh cookie').toBeDefined();
  return cookie!;
}

async function expectSignedIn(page: Page) {
  await expect(page.getByRole('heading', { name: 'My jobs' })).toBeVisible();
  await expect(page.getByRole('heading', { name: 'Sign in' })).toHaveCount(0);
}

test('two tabs reloading at the same moment, again and again, both stay signed in', async ({ page, context, server }) => {
  await page.goto('/signin');
  await signIn(page, server.users.tabs);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await page.goto('/jobs');
  const second = await context.newPage();
  await second.goto('/jobs');
  await expectSignedIn(second);

  const statuses = watchRefreshes([page, second]);
  for (let round = 0; round < 4; round++) {
    // Both tabs ask for a token with the same cookie at once; the lock makes them take turns.
    await Promise.all([page.reload(), second.reload()]);
    for (const tab of [page, second]) await expectSignedIn(tab);
  }
  expect(statuses.length).toBeGreaterThanOrEqual(8);
  expect(statuses.every((status) => status === 200), `refresh answers: ${statuses.join(' ')}`).toBe(true);
  await second.close();
});

test('a refresh whose answer never arrives does not end the session: the next load signs in silently', async ({ page, context, server }) => {
  await page.goto('/signin');
  await signIn(page, server.users.tabs);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  const before = await refreshCookie(context);

  // The server rotates the token, but the answer is lost on its way back (the tab went away mid-request).
  let rotated = 0;
  await page.route(`**${REFRESH_PATH}`, async (route) => {
    rotated = (await route.fetch()).status();
    await route.abort('connectionreset');
  }, { times: 1 });
  await page.reload();
  await expect.poll(() => rotated).toBe(200);
  await page.unrouteAll({ behavior: 'wait' });
  // The browser still holds the cookie it sent.
  await context.addCookies([before]);
  expect((await refreshCookie(context)).value).toBe(before.value);

  const statuses = watchRefreshes([page]);
  await page.goto('/jobs');
  await expectSignedIn(page);
  const after = await refreshCookie(context);
  expect(after.value).not.toBe(before.value);
  // And the new cookie is the family's live token: later loads go on as usual.
  await page.reload();
  await expectSignedIn(page);
  expect(statuses).toEqual([200, 200]);
});
