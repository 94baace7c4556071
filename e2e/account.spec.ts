import { readFileSync } from 'node:fs';
import type { Page } from '@playwright/test';
import { generate } from 'otplib';
import { createCelforgeClient, signingFetch } from '../packages/client/src/index.ts';
import { expect, expectAccessible, expectNoHorizontalScroll, signIn, test, watchCsp, type Account } from './fixtures.ts';

const now = () => Math.floor(Date.now() / 1000);
const codeAt = (secret: string, offsetSeconds = 0) => generate({ secret, epoch: now() + offsetSeconds });

/** Opens the account page the way a person does: from the account menu. */
async function openAccount(page: Page) {
  await page.locator('header details summary').click();
  await page.getByRole('link', { name: 'Account' }).click();
  await expect(page.getByRole('heading', { name: 'Account', level: 1 })).toBeVisible();
}

async function signInFresh(page: Page, account: Account, code?: string) {
  await page.goto('/signin');
  await signIn(page, account, code === undefined ? undefined : async () => code);
}

async function signOut(page: Page) {
  await page.locator('header details summary').click();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
}

const twoFactor = (page: Page) => page.locator('#two-factor');

test('enrol 2FA from the QR page, sign in with a code, spend a recovery code, renew them, turn 2FA off', async ({ page, context, server }) => {
  const account = server.users.enrol;
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await signInFresh(page, account);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await openAccount(page);
  await expect(twoFactor(page).getByText('Off', { exact: true })).toBeVisible();
  await expectAccessible(page, 'account, 2FA off');

  await twoFactor(page).getByRole('button', { name: 'Set up two-factor authentication' }).click();
  const qr = twoFactor(page).getByRole('img', { name: 'QR code for your authenticator app' });
  await expect(qr).toBeVisible();
  // drawn in the page: a canvas with dark modules on white, nothing fetched from elsewhere
  const inked = await qr.locator('canvas').evaluate((canvas: HTMLCanvasElement) => {
    const pixels = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
    let dark = 0;
    for (let i = 0; i < pixels.length; i += 4) if (pixels[i]! < 64) dark++;
    return { dark, total: pixels.length / 4, tag: canvas.tagName };
  });
  expect(inked.tag).toBe('CANVAS');
  expect(inked.dark / inked.total).toBeGreaterThan(0.2);
  expect(inked.dark / inked.total).toBeLessThan(0.7);
  const secret = (await page.locator('#totp-secret').innerText()).replace(/\s+/g, '');
  expect(secret).toMatch(/^[A-Z2-7]{16,}$/);
  await expectAccessible(page, 'account, 2FA setup');

  // a wrong code is said in words; then the previous step's code, so the current one stays for signing in
  await page.getByLabel('Code from the app').fill('000000');
  await page.locator('#totp-password').fill(account.password);
  await page.getByRole('button', { name: 'Turn on' }).click();
  await expect(twoFactor(page).getByRole('alert')).toHaveText("That code didn't work. Wait for the next code in the app and try again.");
  await page.getByLabel('Code from the app').fill(await codeAt(secret, -30));
  await page.getByRole('button', { name: 'Turn on' }).click();

  const list = page.getByRole('list', { name: 'Recovery codes' });
  await expect(list.getByRole('listitem')).toHaveCount(10);
  const recovery = (await list.getByRole('listitem').allInnerTexts()).map((code) => code.trim());
  expect(new Set(recovery).size).toBe(10);
  await expectAccessible(page, 'account, recovery codes');
  const download = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Download' }).click();
  const file = readFileSync(await (await download).path(), 'utf8');
  for (const code of recovery) expect(file).toContain(code);
  await page.getByRole('button', { name: 'Copy: Recovery codes' }).click();
  await expect(page.getByRole('button', { name: 'Copy: Recovery codes' })).toHaveText('Copied');
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(recovery.join('\n'));
  await page.getByRole('button', { name: "I've saved them" }).click();
  await expect(twoFactor(page).getByText('10 recovery codes left.')).toBeVisible();
  await expect(twoFactor(page).getByText('On', { exact: true })).toBeVisible();
  await expectAccessible(page, 'account, 2FA on');

  // sign in again: the password, then the code of the current step
  await signOut(page);
  await signInFresh(page, account, await codeAt(secret));
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();

  // a recovery code instead, once
  await signOut(page);
  await signInFresh(page, account, recovery[0]!);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await openAccount(page);
  await expect(twoFactor(page).getByText('9 recovery codes left.')).toBeVisible();
  await signOut(page);
  await signInFresh(page, account, recovery[0]!);
  await expect(page.getByRole('alert')).toHaveText("That code didn't work. Wait for a fresh code, or use one of your recovery codes.");
  await page.getByLabel('Authentication code').fill(recovery[1]!);
  await page.getByRole('button', { name: 'Verify' }).click();
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();

  // new recovery codes: the old ones stop working
  await openAccount(page);
  await expect(twoFactor(page).getByText('8 recovery codes left.')).toBeVisible();
  await page.locator('#regenerate-code').fill('123456');
  await page.getByRole('button', { name: 'Make new codes' }).click();
  await expect(twoFactor(page).getByRole('alert')).toContainText("That code didn't work");
  await page.locator('#regenerate-code').fill(recovery[2]!);
  await page.getByRole('button', { name: 'Make new codes' }).click();
  await expect(list.getByRole('listitem')).toHaveCount(10);
  const renewed = (await list.getByRole('listitem').allInnerTexts()).map((code) => code.trim());
  expect(renewed.filter((code) => recovery.includes(code))).toEqual([]);
  await page.getByRole('button', { name: "I've saved them" }).click();
  await expect(twoFactor(page).getByText('10 recovery codes left.')).toBeVisible();

  // turning it off asks for a code; an old recovery code no longer is one
  await page.locator('#disable-code').fill(recovery[3]!);
  await page.getByRole('button', { name: 'Turn off two-factor authentication' }).click();
  await expect(twoFactor(page).getByRole('alert')).toContainText("That code didn't work");
  await page.locator('#disable-code').fill(renewed[0]!);
  await page.getByRole('button', { name: 'Turn off two-factor authentication' }).click();
  await expect(twoFactor(page).getByRole('status')).toHaveText('Two-factor authentication is off.');
  await expect(twoFactor(page).getByRole('button', { name: 'Set up two-factor authentication' })).toBeVisible();
  await signOut(page);
  await signInFresh(page, account);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
});

test('create an API key, use it with the signing client, revoke it, see it refused', async ({ page, server }) => {
  const account = server.users.keys;
  await signInFresh(page, account);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await page.goto('/account#api-keys');
  const section = page.locator('#api-keys');
  await expect(section.getByRole('heading', { name: 'No API keys' })).toBeVisible();
  await expect(section.getByRole('checkbox', { name: /admin/ })).toHaveCount(0); // not offered to a non-admin
  await expectAccessible(page, 'account, no API keys');

  await section.getByLabel('Name').fill('render farm script');
  await section.getByRole('checkbox', { name: /gallery:publish/ }).check();
  await section.getByLabel('Expires').selectOption('30');
  await section.getByRole('button', { name: 'Create key' }).click();
  await expect(section.getByRole('heading', { name: 'Key "render farm script" created' })).toBeVisible();
  const apiKey = await page.locator('#created-key').innerText();
  const signingSecret = await page.locator('#created-secret').innerText();
  expect(apiKey).toMatch(/^cfk_[0-9a-f]{24}_[A-Za-z0-9_-]{43}$/);
  expect(signingSecret).toMatch(/^[A-Za-z0-9_-]{43}$/);
  await expect(section.getByRole('button', { name: 'Copy: API key' })).toBeVisible();
  await expect(section.getByRole('button', { name: 'Copy: Signing secret' })).toBeVisible();
  await expect(section.locator('pre')).toContainText("import { createCelforgeClient, signingFetch } from '@celforge/client';");
  await expectAccessible(page, 'account, API key created');

  // the test is the script: the project's client, signing with the key's secret
  const client = createCelforgeClient({ baseUrl: server.url, fetch: signingFetch({ apiKey, signingSecret }) });
  const jobs = await client.GET('/api/anime/jobs');
  expect(jobs.response.status).toBe(200);
  const publish = await client.DELETE('/api/anime/jobs/{id}/publish', { params: { path: { id: '00000000-0000-4000-8000-000000000000' } } });
  // signed and in scope: the request reaches the job lookup, which finds nothing
  expect(publish.response.status, JSON.stringify(publish.error)).toBe(404);
  const unsigned = await fetch(`${server.url}/api/anime/jobs/00000000-0000-4000-8000-000000000000/publish`, { method: 'DELETE', headers: { 'x-api-key': apiKey } });
  expect(unsigned.status).toBe(401);

  await section.getByRole('button', { name: 'Done' }).click();
  await expect(page.locator('#created-key')).toHaveCount(0);
  await page.reload();
  const row = section.getByRole('listitem').filter({ hasText: 'render farm script' });
  await expect(row).toContainText('jobs:read');
  await expect(row).toContainText('gallery:publish');
  await expect(row).toContainText(/Last used\s*(now|\d+ seconds? ago)/);
  await expectAccessible(page, 'account, API key listed');

  await row.getByRole('button', { name: 'Revoke key render farm script' }).click();
  await expect(section.getByRole('status')).toHaveText('Key "render farm script" revoked. It is refused from now on.');
  await expect(section.getByRole('heading', { name: 'No API keys' })).toBeVisible();
  const refused = await client.GET('/api/anime/jobs');
  expect(refused.response.status).toBe(401);
});

test('sessions and devices: revoke one from another browser, then sign out everywhere else', async ({ page, browser, server }) => {
  const account = server.users.devices;
  await signInFresh(page, account);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();

  const other = await browser.newContext({ baseURL: server.url, userAgent: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15' });
  const second = await other.newPage();
  const violations: string[] = [];
  watchCsp(second, violations);
  await signInFresh(second, account);
  await expect(second.getByRole('heading', { name: 'Create' })).toBeVisible();
  await openAccount(second);
  const sessions = second.locator('#sessions');
  const rows = sessions.getByRole('listitem');
  await expect(rows).toHaveCount(2);
  const here = rows.filter({ hasText: 'This browser' });
  await expect(here).toContainText('Safari on macOS');
  await expect(here).toContainText('127.0.0.1');
  await expect(here.getByRole('button')).toHaveCount(0);
  const first = rows.filter({ hasNotText: 'This browser' });
  await expect(first).toContainText(/Chrom(e|ium) on Linux/);
  await expect(first).toContainText(/Signed in/);
  await expect(first).toContainText(/Last active/);
  await expectAccessible(second, 'account, sessions');

  await first.getByRole('button', { name: /^Revoke the session of/ }).click();
  await expect(sessions.getByRole('status')).toHaveText('Session revoked. That browser is signed out on its next action.');
  await expect(rows).toHaveCount(1);

  // the first browser's next action meets the revoked session
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My jobs' }).click();
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await expect(page.getByText('Your session has ended. Sign in again to continue.')).toBeVisible();

  // sign in there again; the second browser ends every other session at once
  await signIn(page, account);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await second.reload();
  await expect(rows).toHaveCount(2);
  await sessions.getByRole('button', { name: 'Sign out everywhere else' }).click();
  await expect(sessions.getByRole('status')).toHaveText('Signed out 1 other session.');
  await expect(sessions.getByText('This browser is the only place you are signed in.')).toBeVisible();
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My jobs' }).click();
  await expect(page.getByText('Your session has ended. Sign in again to continue.')).toBeVisible();
  await other.close();
  expect(violations).toEqual([]);
});

test('change the password: the rules before submitting, refusals in words, other sessions end', async ({ page, browser, server }) => {
  const account = server.users.password;
  const other = await browser.newContext({ baseURL: server.url });
  const elsewhere = await other.newPage();
  await signInFresh(elsewhere, account);
  await expect(elsewhere.getByRole('heading', { name: 'Create' })).toBeVisible();

  await signInFresh(page, account);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await openAccount(page);
  const section = page.locator('#password');
  await expect(section).toContainText('Changing your password signs you out everywhere else');
  await expect(section).toContainText('At least 12 characters');
  await expect(section).toContainText('Not one of the most common passwords');

  await section.getByLabel('Current password').fill('not my password at all');
  await section.getByLabel('New password').fill('short');
  await section.getByRole('button', { name: 'Change password' }).click();
  await expect(section.getByRole('alert')).toHaveText('The new password needs at least 12 characters.');
  await section.getByLabel('New password').fill('lantern harbour quietly 77');
  await section.getByRole('button', { name: 'Change password' }).click();
  await expect(section.getByRole('alert')).toHaveText('Your current password is not right. Nothing was changed.');
  await section.getByLabel('Current password').fill(account.password);
  await section.getByLabel('New password').fill('password1234');
  await section.getByRole('button', { name: 'Change password' }).click();
  await expect(section.getByRole('alert')).toHaveText(/on the list of the most common passwords, the first ones attackers try/);
  await expectAccessible(page, 'account, password refused');

  const changed = { email: account.email, password: 'lantern harbour quietly 77' };
  await section.getByLabel('New password').fill(changed.password);
  await section.getByRole('button', { name: 'Change password' }).click();
  await expect(section.getByRole('status')).toHaveText('Password changed. Every other session has been signed out; this one stays signed in.');
  await expect(page.locator('#sessions').getByRole('listitem')).toHaveCount(1);

  await elsewhere.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My jobs' }).click();
  await expect(elsewhere.getByText('Your session has ended. Sign in again to continue.')).toBeVisible();
  await signIn(elsewhere, account);
  await expect(elsewhere.getByRole('alert')).toHaveText("That didn't work. Check your email and password and try again.");
  await signIn(elsewhere, changed);
  await expect(elsewhere.getByRole('heading', { name: 'Create' })).toBeVisible();
  await other.close();
});

test('an admin without 2FA is led to the two-factor section instead of a dead end', async ({ page, server }) => {
  await signInFresh(page, server.admin);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await openAccount(page);
  await expect(twoFactor(page)).toContainText('Administrative work needs two-factor authentication. Set it up here to open the admin pages.');
  const keys = page.locator('#api-keys');
  await keys.getByLabel('Name').fill('ops');
  await keys.getByRole('checkbox', { name: /jobs:read/ }).uncheck();
  await keys.getByRole('checkbox', { name: /admin/ }).check();
  await keys.getByRole('button', { name: 'Create key' }).click();
  await expect(keys.getByRole('alert')).toContainText('Administrative work needs two-factor authentication.');
  await keys.getByRole('link', { name: 'Set it up in your account' }).click();
  await expect(page).toHaveURL(/#two-factor$/);
  await expect(twoFactor(page).getByRole('button', { name: 'Set up two-factor authentication' })).toBeInViewport();
});

test('the account page on a 360 px phone: no horizontal scroll in any state, axe clean', async ({ browser, server }) => {
  const context = await browser.newContext({ baseURL: server.url, viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true, colorScheme: 'dark' });
  const page = await context.newPage();
  const violations: string[] = [];
  watchCsp(page, violations);
  await signInFresh(page, server.users.phone);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await openAccount(page);
  await expect(page.locator('#sessions').getByRole('listitem')).toHaveCount(1);
  await expectNoHorizontalScroll(page, 'account');
  await expectAccessible(page, 'phone account');

  await twoFactor(page).getByRole('button', { name: 'Set up two-factor authentication' }).click();
  await expect(twoFactor(page).getByRole('img', { name: 'QR code for your authenticator app' })).toBeVisible();
  await expectNoHorizontalScroll(page, 'account, 2FA setup');
  const secret = (await page.locator('#totp-secret').innerText()).replace(/\s+/g, '');
  await page.getByLabel('Code from the app').fill(await codeAt(secret));
  await page.locator('#totp-password').fill(server.users.phone.password);
  await page.getByRole('button', { name: 'Turn on' }).click();
  await expect(page.getByRole('list', { name: 'Recovery codes' }).getByRole('listitem')).toHaveCount(10);
  await expectNoHorizontalScroll(page, 'account, recovery codes');
  await expectAccessible(page, 'phone account, recovery codes');
  await page.getByRole('button', { name: "I've saved them" }).click();
  await expectNoHorizontalScroll(page, 'account, 2FA on');

  const keys = page.locator('#api-keys');
  await keys.getByLabel('Name').fill('phone script with a rather long descriptive name');
  await keys.getByRole('button', { name: 'Create key' }).click();
  await expect(page.locator('#created-key')).toBeVisible();
  await expectNoHorizontalScroll(page, 'account, API key created');
  await expectAccessible(page, 'phone account, API key created');
  await keys.getByRole('button', { name: 'Done' }).click();
  await expect(keys.getByRole('listitem')).toHaveCount(1);
  await expectNoHorizontalScroll(page, 'account, API key listed');
  await context.close();
  expect(violations).toEqual([]);
});
