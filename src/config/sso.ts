import { readSettings, variableName, vaultKeys } from './read-settings.js';
import { SsoProviderVariables, SsoVariables } from './settings.js';
import { ConfigError, type Env } from './variables.js';

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

/** The variable of one provider setting: CELFORGE_OIDC_KEYCLOAK_CLIENT_ID. */
export const ssoVariable = (id: string, setting: string) => variableName(SsoProviderVariables, setting, id);

const providerIds = (env: Env) => readSettings(env, SsoVariables).CELFORGE_OIDC_PROVIDERS;

/** The providers' secrets Vault may hold: key (`oidc_<id>_client_secret`) → variable. */
export function ssoVaultKeys(env: Env): Record<string, string> {
  let ids: string[];
  try {
    ids = providerIds(env);
  } catch {
    return {}; // reported by parseSsoProviders
  }
  return Object.fromEntries(ids.flatMap((id) => Object.entries(vaultKeys(SsoProviderVariables, id))));
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
 * `CELFORGE_OIDC_PROVIDERS=keycloak,google` and, per provider, the `CELFORGE_OIDC_<ID>_*` settings
 * of `SsoProviderVariables` (each also as `*_FILE`; the secrets also as their Vault keys).
 */
export function parseSsoProviders(env: Env): SsoProviderSettings[] {
  const ids = providerIds(env);
  const seen = new Set<string>();
  return ids.map((id) => {
    if (seen.has(id)) throw new ConfigError(`CELFORGE_OIDC_PROVIDERS: "${id}" is listed twice`);
    seen.add(id);
    const provider = readSettings(env, SsoProviderVariables, { id, requiredFor: ` for the provider "${id}" in CELFORGE_OIDC_PROVIDERS` });
    if (!provider.CLIENT_SECRET && !provider.PRIVATE_KEY) {
      throw new ConfigError(`${ssoVariable(id, 'CLIENT_SECRET')} or ${ssoVariable(id, 'PRIVATE_KEY')} is required for the provider "${id}"`);
    }
    const roleMap = parseRoleMap(ssoVariable(id, 'ROLE_MAP'), provider.ROLE_MAP);
    if (Object.keys(roleMap).length > 0 && !provider.ROLE_CLAIM) throw new ConfigError(`${ssoVariable(id, 'ROLE_MAP')} needs ${ssoVariable(id, 'ROLE_CLAIM')}`);
    return {
      id,
      name: provider.NAME ?? id.charAt(0).toUpperCase() + id.slice(1),
      issuer: provider.ISSUER,
      clientId: provider.CLIENT_ID,
      clientSecret: provider.CLIENT_SECRET,
      privateKey: provider.PRIVATE_KEY,
      scopes: provider.SCOPES,
      roleClaim: provider.ROLE_CLAIM,
      roleMap,
      emailDomains: provider.EMAIL_DOMAINS.map((domain) => domain.toLowerCase().replace(/^@/, '')),
      autoProvision: provider.AUTO_PROVISION,
      mfaAmr: provider.MFA_AMR,
      mfaAcr: provider.MFA_ACR,
    };
  });
}
