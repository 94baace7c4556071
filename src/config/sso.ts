import { ConfigError, readVariable, type Env } from './config.js';

export type SsoRole = 'admin' | 'user';

/** One OpenID Connect provider users may sign in with (`CELFORGE_OIDC_<ID>_*`). */
export interface SsoProviderSettings {
  /** lower-case id used in URLs (`/api/auth/sso/<id>/start`) */
  id: string;
  /** what the sign-in button says after "Sign in with" */
  name: string;
  issuer: string;
  clientId: string;
  /** client_secret_basic */
  clientSecret?: string;
  /** private_key_jwt: a private JWK (JSON) or PKCS#8 PEM; wins over the secret when both are set */
  privateKey?: string;
  scopes: string[];
  /** dotted path of the ID-token/userinfo claim that carries the role or groups (e.g. `groups`, `realm_access.roles`) */
  roleClaim?: string;
  /** claim value → Celforge role; with a role claim and a map, a user whose values match none is refused */
  roleMap: Record<string, SsoRole>;
  /** e-mail domains allowed to sign in; empty = any */
  emailDomains: string[];
  /** unknown users (no link by issuer and subject) get an account made for them */
  autoProvision: boolean;
  /** `amr` values that count as the provider having checked a second factor (e.g. mfa, otp, hwk) */
  mfaAmr: string[];
  /** `acr` values that count as the provider having checked a second factor */
  mfaAcr: string[];
}

const ID = /^[a-z][a-z0-9]{0,31}$/;

const list = (text: string | undefined) =>
  (text ?? '')
    .split(/[\s,]+/)
    .map((item) => item.trim())
    .filter(Boolean);

function flag(name: string, text: string | undefined): boolean {
  if (text === undefined) return false;
  if (['true', '1', 'yes', 'on'].includes(text.toLowerCase())) return true;
  if (['false', '0', 'no', 'off'].includes(text.toLowerCase())) return false;
  throw new ConfigError(`${name}: "${text}" is not true or false`);
}

/** The variable of one provider setting: CELFORGE_OIDC_KEYCLOAK_CLIENT_ID. */
export const ssoVariable = (id: string, setting: string) => `CELFORGE_OIDC_${id.toUpperCase()}_${setting}`;

/** The providers' secrets Vault may hold: key (`oidc_<id>_client_secret`) → variable. */
export function ssoVaultKeys(env: Env): Record<string, string> {
  const keys: Record<string, string> = {};
  for (const id of list(readVariable(env, 'CELFORGE_OIDC_PROVIDERS'))) {
    if (!ID.test(id)) continue; // reported by parseSsoProviders
    keys[`oidc_${id}_client_secret`] = ssoVariable(id, 'CLIENT_SECRET');
    keys[`oidc_${id}_private_key`] = ssoVariable(id, 'PRIVATE_KEY');
  }
  return keys;
}

function parseIssuer(name: string, text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${name}: not a valid URL`);
  }
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new ConfigError(`${name}: must start with https:// (http:// only for localhost)`);
  }
  return text.replace(/\/$/, '');
}

function parseRoleMap(name: string, text: string | undefined): Record<string, SsoRole> {
  const map: Record<string, SsoRole> = {};
  for (const item of (text ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const at = item.lastIndexOf('=');
    const value = item.slice(0, at).trim();
    const role = item.slice(at + 1).trim();
    if (at <= 0 || (role !== 'admin' && role !== 'user')) throw new ConfigError(`${name}: "${item}" is not like celforge-admins=admin`);
    map[value] = role;
  }
  return map;
}

/**
 * `CELFORGE_OIDC_PROVIDERS=keycloak,google` and, per provider, `CELFORGE_OIDC_<ID>_ISSUER`,
 * `_CLIENT_ID`, `_CLIENT_SECRET` or `_PRIVATE_KEY` (each also as `*_FILE` or the Vault key
 * `oidc_<id>_client_secret` / `oidc_<id>_private_key`), `_NAME`, `_SCOPES`, `_ROLE_CLAIM`,
 * `_ROLE_MAP`, `_EMAIL_DOMAINS`, `_AUTO_PROVISION`, `_MFA_AMR`, `_MFA_ACR`.
 */
export function parseSsoProviders(env: Env): SsoProviderSettings[] {
  const ids = list(readVariable(env, 'CELFORGE_OIDC_PROVIDERS'));
  const seen = new Set<string>();
  return ids.map((id) => {
    if (!ID.test(id)) throw new ConfigError(`CELFORGE_OIDC_PROVIDERS: "${id}" is not a lower-case id like keycloak`);
    if (seen.has(id)) throw new ConfigError(`CELFORGE_OIDC_PROVIDERS: "${id}" is listed twice`);
    seen.add(id);
    const read = (setting: string) => readVariable(env, ssoVariable(id, setting));
    const required = (setting: string) => {
      const value = read(setting);
      if (!value) throw new ConfigError(`${ssoVariable(id, setting)} is required for the provider "${id}" in CELFORGE_OIDC_PROVIDERS`);
      return value;
    };
    const issuer = parseIssuer(ssoVariable(id, 'ISSUER'), required('ISSUER'));
    const clientSecret = read('CLIENT_SECRET');
    const privateKey = read('PRIVATE_KEY');
    if (!clientSecret && !privateKey) {
      throw new ConfigError(`${ssoVariable(id, 'CLIENT_SECRET')} or ${ssoVariable(id, 'PRIVATE_KEY')} is required for the provider "${id}"`);
    }
    const scopes = list(read('SCOPES') ?? 'openid email profile');
    if (!scopes.includes('openid')) throw new ConfigError(`${ssoVariable(id, 'SCOPES')}: must include openid`);
    const roleMap = parseRoleMap(ssoVariable(id, 'ROLE_MAP'), read('ROLE_MAP'));
    const roleClaim = read('ROLE_CLAIM');
    if (Object.keys(roleMap).length > 0 && !roleClaim) throw new ConfigError(`${ssoVariable(id, 'ROLE_MAP')} needs ${ssoVariable(id, 'ROLE_CLAIM')}`);
    return {
      id,
      name: read('NAME') ?? id.charAt(0).toUpperCase() + id.slice(1),
      issuer,
      clientId: required('CLIENT_ID'),
      clientSecret,
      privateKey,
      scopes,
      roleClaim,
      roleMap,
      emailDomains: list(read('EMAIL_DOMAINS')).map((domain) => domain.toLowerCase().replace(/^@/, '')),
      autoProvision: flag(ssoVariable(id, 'AUTO_PROVISION'), read('AUTO_PROVISION')),
      mfaAmr: list(read('MFA_AMR')),
      mfaAcr: list(read('MFA_ACR')),
    };
  });
}
