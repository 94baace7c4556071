import { startOidcProvider, type OidcTestProvider } from '../test/support/oidc-provider.js';
import { expect, expectAccessible, expectNoHorizontalScroll, freePort, signIn, startServer, test as studio } from './fixtures.js';

const SECRET = 'e2e-client-secret-of-enough-length';

/** This spec's own Celforge, configured with a real OpenID provider started here. */
const test = studio.extend<object, { provider: OidcTestProvider }>({
  provider: [
    async ({}, use) => {
      const port = await freePort();
      // the studio's public URL (e2e/fixtures.ts): localhost, so passkeys work there too
      const url = `http://localhost:${port}`;
      const provider = await startOidcProvider({
        clients: [{ client_id: 'celforge', client_secret: SECRET, redirect_uris: [`${url}/api/auth/sso/corp/callback`], post_logout_redirect_uris: [`${url}/signin`] }],
        users: [
          { sub: 'alice-0001', email: 'alice@corp.test', email_verified: true, name: 'Alice' },
          { sub: 'maker-0002', email: 'maker@celforge.test', email_verified: true, name: 'Maker' },
        ],
      });
      (provider as OidcTestProvider & { celforgePort: number }).celforgePort = port;
      await use(provider);
      await provider.close();
    },
    { scope: 'worker' },
  ],
  server: [
    async ({ provider }, use) => {
      const { server, stop } = await startServer({
        port: (provider as OidcTestProvider & { celforgePort: number }).celforgePort,
        env: {
          CELFORGE_OIDC_PROVIDERS: 'corp',
          CELFORGE_OIDC_CORP_NAME: 'Corp ID',
          CELFORGE_OIDC_CORP_ISSUER: provider.issuer,
          CELFORGE_OIDC_CORP_CLIENT_ID: 'celforge',
          CELFORGE_OIDC_CORP_CLIENT_SECRET: SECRET,
          CELFORGE_OIDC_CORP_AUTO_PROVISION: 'true',
          CELFORGE_OIDC_CORP_EMAIL_DOMAINS: 'corp.test,celforge.test',
        },
      });
      await use(server);
      await stop();
    },
    { scope: 'worker', timeout: 120_000 },
  ],
});

test('signs in with the provider, lands signed in, and signs out of the provider too', async ({ page, provider }) => {
  await page.setViewportSize({ width: 360, height: 780 });
  await page.goto('/signin');
  const button = page.getByRole('link', { name: 'Sign in with Corp ID' });
  await expect(button).toBeVisible();
  await expectAccessible(page, 'sign-in with providers');
  await expectNoHorizontalScroll(page, 'sign-in with providers');
  await page.screenshot({ path: 'test-results/oidc-signin.png', fullPage: true });

  await button.click();
  await expect(page).toHaveURL(new RegExp(`^${provider.issuer}/interaction/`));
  await page.getByLabel('Username').fill('alice-0001');
  await page.getByRole('button', { name: 'Continue' }).click();
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();

  await page.goto('/account');
  await expect(page.getByRole('heading', { name: 'Sign-in providers' })).toBeVisible();
  await expect(page.getByText('Corp ID — alice@corp.test')).toBeVisible();
  await expectAccessible(page, 'account with a linked provider');
  await expectNoHorizontalScroll(page, 'account with a linked provider');
  await page.screenshot({ path: 'test-results/oidc-account.png', fullPage: true });

  await page.locator('header details summary').click();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(new RegExp(`^${provider.issuer}/session/end`));
});

test('an existing account links the provider from its account page, then signs in with it', async ({ page, server }) => {
  await page.goto('/signin');
  // the e-mail belongs to a local account: never linked by e-mail alone
  await page.getByRole('link', { name: 'Sign in with Corp ID' }).click();
  await page.getByLabel('Username').fill('maker-0002');
  await page.getByRole('button', { name: 'Continue' }).click();
  await expect(page).toHaveURL(/\/signin\?sso_error=sso-link-required/);
  await expect(page.getByRole('alert')).toContainText('link the provider from your account page');

  await signIn(page, server.users.maker);
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await page.goto('/account');
  // the provider still knows this browser from the refused attempt: no sign-in page this time
  await page.getByRole('button', { name: 'Link Corp ID' }).click();
  await expect(page).toHaveURL(/\/account\?linked=corp/);
  await expect(page.locator('#sign-in-providers').getByRole('status')).toContainText('Corp ID is now linked');
  await expect(page.getByText('Corp ID — maker@celforge.test')).toBeVisible();

  // signed out of the password session, the provider now signs this account in
  await page.locator('header details summary').click();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await page.getByRole('link', { name: 'Sign in with Corp ID' }).click();
  await expect(page.getByRole('heading', { name: 'Create' })).toBeVisible();
  await page.goto('/account');
  await expect(page.getByText('Corp ID — maker@celforge.test')).toBeVisible();
  await page.getByRole('button', { name: 'Unlink Corp ID' }).click();
  await expect(page.getByText('No provider is linked to this account.')).toBeVisible();
});
