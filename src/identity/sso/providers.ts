import { importJWK, importPKCS8, type JWK } from 'jose';
import * as oidc from 'openid-client';
import type { SsoProviderSettings } from '../../config/sso.js';
import { HttpProblem } from '../../http/problem.js';

/**
 * The configured providers, each discovered on first use (and again after a failed discovery, so
 * a provider that was down at start-up is picked up once it answers).
 */
export class SsoProviders {
  private readonly discovered = new Map<string, Promise<oidc.Configuration>>();
  private readonly byId: Map<string, SsoProviderSettings>;

  constructor(settings: SsoProviderSettings[]) {
    this.byId = new Map(settings.map((p) => [p.id, p]));
  }

  list(): SsoProviderSettings[] {
    return [...this.byId.values()];
  }

  settings(id: string): SsoProviderSettings | undefined {
    return this.byId.get(id);
  }

  async configuration(provider: SsoProviderSettings): Promise<oidc.Configuration> {
    let pending = this.discovered.get(provider.id);
    if (!pending) {
      pending = discover(provider);
      this.discovered.set(provider.id, pending);
      pending.catch(() => this.discovered.delete(provider.id));
    }
    try {
      return await pending;
    } catch {
      throw new HttpProblem(503, 'sso-provider-unavailable', `${provider.name} cannot be reached right now; try again later.`);
    }
  }
}

async function clientAuthentication(provider: SsoProviderSettings): Promise<oidc.ClientAuth> {
  if (!provider.privateKey) return oidc.ClientSecretBasic(provider.clientSecret!);
  const text = provider.privateKey.trim();
  if (text.startsWith('{')) {
    const jwk = JSON.parse(text) as JWK;
    const key = (await importJWK(jwk, jwk.alg ?? 'RS256')) as Extract<Parameters<typeof oidc.PrivateKeyJwt>[0], { key: unknown }>['key'];
    return oidc.PrivateKeyJwt({ key, kid: jwk.kid });
  }
  return oidc.PrivateKeyJwt(await importPKCS8(text, 'RS256'));
}

async function discover(provider: SsoProviderSettings): Promise<oidc.Configuration> {
  const issuer = new URL(provider.issuer);
  // Plain HTTP is accepted for loopback issuers only (development and tests); the config refuses others.
  const execute = issuer.protocol === 'http:' ? [oidc.allowInsecureRequests] : [];
  return oidc.discovery(issuer, provider.clientId, undefined, await clientAuthentication(provider), { execute, timeout: 10 });
}
