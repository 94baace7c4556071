import type { CDPSession, Page } from '@playwright/test';
import { expect, expectAccessible, expectNoHorizontalScroll, signIn, test } from './fixtures.ts';

/**
 * Passkeys in Chromium with the DevTools protocol's virtual authenticator: a platform
 * authenticator (CTAP2, internal transport) with discoverable credentials and user verification,
 * which answers the browser's prompts by itself.
 */
async function virtualAuthenticator(page: Page): Promise<{ cdp: CDPSession; authenticatorId: string }> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  return { cdp, authenticatorId };
}

/**
 * From the next page load on, the browser offers no conditional UI (as some do not): the virtual
 * authenticator answers a conditional request at once, which would sign in before a button is pressed.
 */
async function withoutPasskeyAutofill(page: Page) {
  await page.addInitScript(() => {
    PublicKeyCredential.isConditionalMediationAvailable = async () => false;
  });
}

async function signOut(page: Page, options: { waitForSignInPage?: boolean } = {}) {
  await page.locator('header details summary').click();
  await page.getByRole('button', { name: 'Sign out' }).click();
  if (options.waitForSignInPage !== false) await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
}

async function addPasskey(page: Page, name: string, password: string) {
  await page.locator('#passkeys').getByLabel('Name (optional)').fill(name);
  await page.locator('#passkeys').getByLabel('Current password').fill(password);
  await page.getByRole('button', { name: 'Add passkey' }).click();
  await expect(page.getByRole('status')).toHaveText(`Passkey "${name}" added.`);
}

test('an admin adds a passkey, steps up with it, signs in with it (passwordless and after the password), and cannot remove the last one', async ({ page, server }) => {
  const { cdp, authenticatorId } = await virtualAuthenticator(page);
  const admin = server.passkeyAdmin;

  await page.goto('/signin');
  await expect(page.getByRole('button', { name: 'Sign in with a passkey' })).toBeVisible();
  await expect(page.getByLabel('Email')).toHaveAttribute('autocomplete', 'username webauthn');
  await expectAccessible(page, 'sign in with passkeys');
  await page.screenshot({ path: test.info().outputPath('sign-in-passkeys.png') });
  await signIn(page, admin);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();

  // Account: add a passkey
  await page.goto('/account');
  await expect(page.getByRole('heading', { name: 'Passkeys' })).toBeVisible();
  await expect(page.getByText("You haven't added a passkey yet.")).toBeVisible();
  await expectAccessible(page, 'account, no passkeys');
  await page.locator('#passkeys').getByLabel('Name (optional)').fill('Laptop');
  await page.locator('#passkeys').getByLabel('Current password').fill('not the password at all');
  await page.getByRole('button', { name: 'Add passkey' }).click();
  await expect(page.getByRole('alert')).toHaveText("That password isn't right.");
  await addPasskey(page, 'Studio laptop', admin.password);
  const item = page.getByRole('list', { name: 'Your passkeys' }).getByRole('listitem');
  await expect(item).toHaveCount(1);
  await expect(item).toContainText('Studio laptop');
  await expect(item).toContainText('Not used yet');
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  expect(credentials).toHaveLength(1);
  expect(credentials[0]!.isResidentCredential).toBe(true);
  await expectAccessible(page, 'account, one passkey');

  // Admin work in this password-only session needs a step-up: the dialog takes the passkey.
  await page.goto('/admin');
  const stepUp = page.getByRole('dialog', { name: "Confirm it's you" });
  await expect(stepUp).toBeVisible();
  await expectAccessible(page, 'step-up dialog with a passkey');
  await stepUp.getByRole('button', { name: 'Use a passkey' }).click();
  await expect(stepUp).toBeHidden();
  await expect(page.getByRole('heading', { name: 'Queue depth' })).toBeVisible();
  await page.goto('/account');

  // Passwordless through conditional UI: the sign-in page asks in the background and the
  // authenticator (here answering by itself) signs in without e-mail or password.
  // (the sign-in page may be gone again before it could be seen)
  await signOut(page, { waitForSignInPage: false });
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await page.goto('/account');
  await expect(item).toContainText(/Last used (now|\d+ seconds? ago)/);

  // Passwordless with the button (in a new document, which offers no conditional UI).
  await withoutPasskeyAutofill(page);
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Passkeys' })).toBeVisible();
  await signOut(page);
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();

  // The password alone no longer signs this admin in: the passkey confirms it.
  await signOut(page);
  await signIn(page, admin);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();

  // An admin's last second factor stays.
  await page.goto('/account');
  await page.getByRole('button', { name: 'Remove Studio laptop' }).click();
  await page.getByRole('button', { name: 'Remove passkey' }).click();
  await expect(page.getByRole('alert')).toContainText('administrators need one');
  await expect(item).toHaveCount(1);
});

test('a user renames and removes a passkey; a removed passkey no longer signs in', async ({ page, server }) => {
  await virtualAuthenticator(page);
  await withoutPasskeyAutofill(page);
  const user = server.users.passkeys;
  await page.setViewportSize({ width: 360, height: 740 });
  await page.goto('/signin');
  await signIn(page, user);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await page.goto('/account');
  await addPasskey(page, 'Phone', user.password);
  await expectNoHorizontalScroll(page, 'account on a phone');

  await page.getByRole('button', { name: 'Rename Phone' }).click();
  await page.getByLabel('New name for Phone').fill('Old phone');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('status')).toHaveText('Renamed to "Old phone".');
  await expectAccessible(page, 'account on a phone');
  await page.screenshot({ path: test.info().outputPath('account-passkeys-phone.png'), fullPage: true });

  await page.getByRole('button', { name: 'Remove Old phone' }).click();
  await expect(page.getByText('Remove the passkey "Old phone"?')).toBeVisible();
  await page.getByRole('button', { name: 'Remove passkey' }).click();
  await expect(page.getByRole('status')).toHaveText('Passkey "Old phone" removed.');
  await expect(page.getByText("You haven't added a passkey yet.")).toBeVisible();

  // The authenticator still holds the credential; the server no longer knows it.
  await signOut(page);
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await expect(page.getByRole('alert')).toHaveText("That passkey wasn't accepted. Try again, or sign in with your password.");
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
});
