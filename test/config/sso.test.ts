import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import { ssoVaultKeys } from '../../src/config/sso.js';

const base = {
  CELFORGE_OIDC_PROVIDERS: 'keycloak',
  CELFORGE_OIDC_KEYCLOAK_ISSUER: 'https://sso.example/realms/studio/',
  CELFORGE_OIDC_KEYCLOAK_CLIENT_ID: 'celforge',
  CELFORGE_OIDC_KEYCLOAK_CLIENT_SECRET: 's3cret-value',
};

describe('config: single sign-on providers', () => {
  it('reads a provider with its defaults', () => {
    const [provider] = loadConfig({ ...base, CELFORGE_OIDC_KEYCLOAK_ROLE_CLAIM: 'realm_access.roles', CELFORGE_OIDC_KEYCLOAK_ROLE_MAP: 'celforge-admins=admin, artists=user', CELFORGE_OIDC_KEYCLOAK_EMAIL_DOMAINS: '@Studio.example' }).sso;
    expect(provider).toEqual({
      id: 'keycloak',
      name: 'Keycloak',
      issuer: 'https://sso.example/realms/studio',
      clientId: 'celforge',
      clientSecret: 's3cret-value',
      privateKey: undefined,
      scopes: ['openid', 'email', 'profile'],
      roleClaim: 'realm_access.roles',
      roleMap: { 'celforge-admins': 'admin', artists: 'user' },
      emailDomains: ['studio.example'],
      autoProvision: false,
      mfaAmr: [],
      mfaAcr: [],
    });
    expect(loadConfig({}).sso).toEqual([]);
  });

  it('stops start-up with one line naming the variable, never the secret', () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ CELFORGE_OIDC_KEYCLOAK_CLIENT_ID: '' }, /^CELFORGE_OIDC_KEYCLOAK_CLIENT_ID is required/],
      [{ CELFORGE_OIDC_KEYCLOAK_CLIENT_SECRET: '' }, /^CELFORGE_OIDC_KEYCLOAK_CLIENT_SECRET or CELFORGE_OIDC_KEYCLOAK_PRIVATE_KEY is required/],
      [{ CELFORGE_OIDC_KEYCLOAK_ISSUER: 'http://sso.example' }, /^CELFORGE_OIDC_KEYCLOAK_ISSUER: must start with https:\/\//],
      [{ CELFORGE_OIDC_KEYCLOAK_ROLE_MAP: 'admins=root', CELFORGE_OIDC_KEYCLOAK_ROLE_CLAIM: 'groups' }, /^CELFORGE_OIDC_KEYCLOAK_ROLE_MAP: "admins=root"/],
      [{ CELFORGE_OIDC_KEYCLOAK_ROLE_MAP: 'admins=admin' }, /needs CELFORGE_OIDC_KEYCLOAK_ROLE_CLAIM/],
      [{ CELFORGE_OIDC_KEYCLOAK_AUTO_PROVISION: 'maybe' }, /^CELFORGE_OIDC_KEYCLOAK_AUTO_PROVISION: "maybe" is not true or false/],
      [{ CELFORGE_OIDC_KEYCLOAK_SCOPES: 'email' }, /must include openid/],
      [{ CELFORGE_OIDC_PROVIDERS: 'Key-Cloak' }, /^CELFORGE_OIDC_PROVIDERS: "Key-Cloak"/],
    ];
    for (const [change, message] of cases) {
      let error: unknown;
      try {
        loadConfig({ ...base, ...change });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).not.toContain('\n');
      expect((error as Error).message).not.toContain('s3cret-value');
    }
  });

  it("lets Vault hold each provider's client secret and private key", () => {
    expect(ssoVaultKeys({ CELFORGE_OIDC_PROVIDERS: 'keycloak,google' })).toEqual({
      oidc_keycloak_client_secret: 'CELFORGE_OIDC_KEYCLOAK_CLIENT_SECRET',
      oidc_keycloak_private_key: 'CELFORGE_OIDC_KEYCLOAK_PRIVATE_KEY',
      oidc_google_client_secret: 'CELFORGE_OIDC_GOOGLE_CLIENT_SECRET',
      oidc_google_private_key: 'CELFORGE_OIDC_GOOGLE_PRIVATE_KEY',
    });
  });
});
