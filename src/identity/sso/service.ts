import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import * as oidc from 'openid-client';
import type { Principal } from '../../access/principal.js';
import type { Auditor, AuditEvent } from '../../audit/events.js';
import type { SsoProviderSettings, SsoRole } from '../../config/sso.js';
import type { Store } from '../../db/database.js';
import { HttpProblem, conflict, notFound } from '../../http/problem.js';
import type { RevocationPublisher } from '../revocations.js';
import type { IdentityService, RequestContext, TokenPair } from '../service.js';
import * as users from '../store.js';
import type { SsoProviders } from './providers.js';
import * as db from './store.js';

/** An attempt must come back from the provider within this long. */
export const ATTEMPT_SECONDS = 10 * 60;
/** The password hash of an account made by single sign-on: no password matches it. */
export const NO_PASSWORD = '!sso';
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
const iso = (ms = Date.now()) => new Date(ms).toISOString();

export interface SsoDeps {
  store: Store;
  identity: IdentityService;
  providers: SsoProviders;
  revocations: RevocationPublisher;
  audit: Auditor;
  /** CELFORGE_PUBLIC_URL: callbacks and the post-logout address are built from it */
  publicUrl: string;
}

export interface StartedAttempt {
  /** where the browser goes next (the provider's authorization endpoint) */
  url: string;
  /** the value of the attempt cookie: only the browser that started the attempt may finish it */
  binding: string;
}

export type Completed = { kind: 'signed-in'; pair: TokenPair } | { kind: 'linked'; provider: string };

/** A refusal: the problem for the client, and the reason kept in the audit trail. */
class Refusal extends HttpProblem {
  constructor(
    status: number,
    slug: string,
    detail: string,
    readonly reason: string,
  ) {
    super(status, slug, detail);
  }
}

const refused = (reason: string) => new Refusal(400, 'sso-refused', 'The sign-in could not be completed; start again from the sign-in page.', reason);

/** The value at a dotted path of the claims (`realm_access.roles`), as a list of strings. */
function claimValues(claims: Record<string, unknown>, path: string): string[] {
  let value: unknown = claims;
  for (const part of path.split('.')) value = value && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
  if (typeof value === 'string') return [value];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/** Single sign-on with OpenID Connect: the code flow, account links, and the provider's logouts. */
export class SsoService {
  private readonly seenLogoutTokens = new Map<string, number>();
  private readonly jwks = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

  constructor(private readonly deps: SsoDeps) {}

  private get db() {
    return this.deps.store.db;
  }

  private audit(event: AuditEvent, ctx?: RequestContext): void {
    this.deps.audit.record({ ip: ctx?.ip ?? null, requestId: ctx?.requestId ?? null, ...event });
  }

  /** The providers for the sign-in page: ids and names, nothing else. */
  publicList() {
    return this.deps.providers.list().map((p) => ({ id: p.id, name: p.name }));
  }

  provider(id: string): SsoProviderSettings {
    const provider = this.deps.providers.settings(id);
    if (!provider) throw notFound('No such sign-in provider.');
    return provider;
  }

  callbackUrl(provider: SsoProviderSettings): string {
    return `${this.deps.publicUrl}/api/auth/sso/${provider.id}/callback`;
  }

  /** Starts a sign-in (anyone) or a link (`user`: the signed-in account) at the provider. */
  async start(providerId: string, purpose: 'signin' | 'link', ctx: RequestContext, user?: Principal): Promise<StartedAttempt> {
    const provider = this.provider(providerId);
    const config = await this.deps.providers.configuration(provider);
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const verifier = oidc.randomPKCECodeVerifier();
    const binding = randomBytes(32).toString('base64url');
    const now = Date.now();
    await db.insertAttempt(
      this.db,
      {
        state_hash: sha256(state),
        binding_hash: sha256(binding),
        provider: provider.id,
        purpose,
        user_id: user?.userId ?? null,
        nonce,
        code_verifier: verifier,
        created_at: iso(now),
        expires_at: iso(now + ATTEMPT_SECONDS * 1000),
        used_at: null,
      },
      iso(now),
    );
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: this.callbackUrl(provider),
      scope: provider.scopes.join(' '),
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    if (purpose === 'link') this.audit({ action: 'sso.link.start', outcome: 'success', actorId: user!.userId, detail: { provider: provider.id } }, ctx);
    return { url: url.href, binding };
  }

  /**
   * The provider's answer: the attempt is looked up by `state`, must belong to this browser and is
   * spent once; the library exchanges the code (with the PKCE verifier) and checks the ID token
   * (signature, issuer, audience, expiry, nonce). Every refusal is audited.
   */
  async complete(providerId: string, query: string, binding: string | undefined, ctx: RequestContext): Promise<Completed> {
    const provider = this.provider(providerId);
    let attempt: db.SsoAttemptRow | undefined;
    try {
      const params = new URLSearchParams(query);
      const state = params.get('state');
      if (!state) throw refused('state-missing');
      attempt = await db.findAttempt(this.db, sha256(state));
      if (!attempt || attempt.provider !== provider.id) throw refused('state-unknown');
      if (!binding || sha256(binding) !== attempt.binding_hash) throw refused('attempt-cookie');
      if (Date.parse(attempt.expires_at) <= Date.now()) throw refused('attempt-expired');
      if (!(await db.spendAttempt(this.db, attempt.state_hash, iso()))) throw refused('attempt-reused');
      const claims = await this.exchange(provider, query, attempt, state);
      if (attempt.purpose === 'link') return await this.link(provider, attempt.user_id!, claims, ctx);
      return { kind: 'signed-in', pair: await this.signIn(provider, claims, ctx) };
    } catch (error) {
      const reason = error instanceof Refusal ? error.reason : error instanceof HttpProblem ? error.slug : 'error';
      this.audit(
        { action: attempt?.purpose === 'link' ? 'sso.link' : 'sso.signin', outcome: 'failure', actorId: attempt?.user_id ?? null, detail: { provider: provider.id, reason } },
        ctx,
      );
      throw error;
    }
  }

  /** What an attempt was for (its state in the callback's query), so a refused link goes back to the account page. */
  async purposeOf(query: string): Promise<'signin' | 'link' | undefined> {
    const state = new URLSearchParams(query).get('state');
    return state ? (await db.findAttempt(this.db, sha256(state)))?.purpose : undefined;
  }

  private async exchange(provider: SsoProviderSettings, query: string, attempt: db.SsoAttemptRow, state: string) {
    const config = await this.deps.providers.configuration(provider);
    const current = new URL(`${this.callbackUrl(provider)}?${query}`);
    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      tokens = await oidc.authorizationCodeGrant(config, current, {
        pkceCodeVerifier: attempt.code_verifier,
        expectedState: state,
        expectedNonce: attempt.nonce,
        idTokenExpected: true,
      });
    } catch (error) {
      throw refused(libraryReason(error));
    }
    const claims = { ...(tokens.claims() as Record<string, unknown>) };
    // Some providers leave the e-mail out of the ID token; the userinfo endpoint has it then.
    if (typeof claims.email !== 'string' && config.serverMetadata().userinfo_endpoint) {
      try {
        const info = await oidc.fetchUserInfo(config, tokens.access_token, String(claims.sub));
        for (const [name, value] of Object.entries(info)) if (!(name in claims)) claims[name] = value;
      } catch {
        // the ID token alone decides then
      }
    }
    return claims;
  }

  /** The e-mail the provider vouches for, when the domain list asks for one or an account is to be made. */
  private checkedEmail(provider: SsoProviderSettings, claims: Record<string, unknown>): string | undefined {
    const email = typeof claims.email === 'string' ? claims.email.trim().toLowerCase() : undefined;
    if (provider.emailDomains.length === 0) return email;
    if (!email || claims.email_verified === false) throw new Refusal(403, 'sso-email-domain', 'This sign-in provider did not give a verified e-mail address.', 'email-unverified');
    const domain = email.slice(email.lastIndexOf('@') + 1);
    if (!provider.emailDomains.includes(domain)) {
      throw new Refusal(403, 'sso-email-domain', 'Accounts of that e-mail domain may not sign in here.', 'email-domain');
    }
    return email;
  }

  /** The role the provider's claim maps to; undefined when no mapping is configured. */
  private mappedRole(provider: SsoProviderSettings, claims: Record<string, unknown>): SsoRole | undefined {
    if (!provider.roleClaim || Object.keys(provider.roleMap).length === 0) return undefined;
    const roles = claimValues(claims, provider.roleClaim).map((value) => provider.roleMap[value]);
    if (roles.includes('admin')) return 'admin';
    if (roles.includes('user')) return 'user';
    throw new Refusal(403, 'sso-no-role', 'Your account at the sign-in provider is not in a group allowed to use Celforge.', 'no-role');
  }

  private providerAssertsMfa(provider: SsoProviderSettings, claims: Record<string, unknown>): boolean {
    const amr = claimValues(claims, 'amr');
    const acr = typeof claims.acr === 'string' ? claims.acr : undefined;
    return amr.some((value) => provider.mfaAmr.includes(value)) || (acr !== undefined && provider.mfaAcr.includes(acr));
  }

  private async signIn(provider: SsoProviderSettings, claims: Record<string, unknown>, ctx: RequestContext): Promise<TokenPair> {
    const issuer = String(claims.iss);
    const subject = String(claims.sub);
    const email = this.checkedEmail(provider, claims);
    const role = this.mappedRole(provider, claims);
    const link = await db.findLink(this.db, issuer, subject);
    let user: users.UserRow | undefined;
    let provisioned = false;
    if (link) {
      user = await users.findUserById(this.db, link.user_id);
    } else {
      if (!provider.autoProvision) {
        throw new Refusal(403, 'sso-account-unknown', 'No Celforge account is linked to this sign-in; ask an administrator, or sign in and link it from your account page.', 'unknown-subject');
      }
      if (!email) throw new Refusal(403, 'sso-email-missing', 'The sign-in provider did not give an e-mail address.', 'email-missing');
      if (claims.email_verified === false) throw new Refusal(403, 'sso-email-unverified', 'The sign-in provider has not verified your e-mail address.', 'email-unverified');
      // An account with this e-mail exists: only its owner, signed in, may link it (never by e-mail alone).
      if (await users.findUserByEmail(this.db, email)) {
        throw new Refusal(409, 'sso-link-required', 'An account with this e-mail exists. Sign in to it with its password, then link this provider from your account page.', 'email-collision');
      }
      user = await this.provision(provider, email, role ?? 'user', issuer, subject, ctx);
      provisioned = true;
    }
    if (!user || user.disabled === 1) throw new Refusal(403, 'sso-account-disabled', 'This account is disabled.', 'disabled');
    if (role !== undefined && role !== user.role) user = await this.applyRole(user, role, provider, ctx);

    const mfa = this.providerAssertsMfa(provider, claims);
    const pair = await this.deps.identity.openSession(user, ctx, mfa, undefined, 'provider');
    await db.insertSsoSession(this.db, { session_id: pair.session_id, provider: provider.id, issuer, subject, sid: typeof claims.sid === 'string' ? claims.sid : null });
    const linkId = link?.id ?? (await db.findLink(this.db, issuer, subject))!.id;
    await db.touchLink(this.db, linkId, iso());
    this.audit({ action: 'sso.signin', outcome: 'success', actorId: user.id, target: pair.session_id, detail: { provider: provider.id, mfa, provisioned } }, ctx);
    return pair;
  }

  private async provision(provider: SsoProviderSettings, email: string, role: SsoRole, issuer: string, subject: string, ctx: RequestContext) {
    const user = users.newUserRow({ email, password_hash: NO_PASSWORD, role });
    const now = user.created_at;
    try {
      await this.db.transaction().execute(async (trx) => {
        await users.insertUser(trx, user);
        await db.insertLink(trx, { id: randomUUID(), issuer, subject, provider: provider.id, user_id: user.id, email, created_at: now, last_used_at: null });
      });
    } catch {
      // a parallel callback for the same person made it first
      throw new Refusal(409, 'sso-link-required', 'An account with this e-mail exists. Sign in to it, then link this provider from your account page.', 'email-collision');
    }
    this.audit({ action: 'user.create', outcome: 'success', target: user.id, detail: { role, via: 'sso', provider: provider.id } }, ctx);
    return user;
  }

  /** The provider's group claim decides the role: a change takes effect on every session at once. */
  private async applyRole(user: users.UserRow, role: SsoRole, provider: SsoProviderSettings, ctx: RequestContext) {
    const at = Date.now();
    await users.updateUser(this.db, user.id, { role, updated_at: iso(at) });
    await this.deps.revocations.publish({ kind: 'user', userId: user.id, role, disabled: false, at });
    this.audit({ action: 'sso.role', outcome: 'success', target: user.id, detail: { provider: provider.id, from: user.role, to: role } }, ctx);
    return { ...user, role };
  }

  private async link(provider: SsoProviderSettings, userId: string, claims: Record<string, unknown>, ctx: RequestContext): Promise<Completed> {
    const issuer = String(claims.iss);
    const subject = String(claims.sub);
    const email = this.checkedEmail(provider, claims);
    const existing = await db.findLink(this.db, issuer, subject);
    if (existing && existing.user_id !== userId) {
      throw new Refusal(409, 'sso-linked-elsewhere', 'That account at the sign-in provider is linked to another Celforge account.', 'linked-elsewhere');
    }
    if (!existing) {
      await db.insertLink(this.db, { id: randomUUID(), issuer, subject, provider: provider.id, user_id: userId, email: email ?? null, created_at: iso(), last_used_at: null });
    }
    this.audit({ action: 'sso.link', outcome: 'success', actorId: userId, detail: { provider: provider.id } }, ctx);
    return { kind: 'linked', provider: provider.id };
  }

  async listLinks(userId: string) {
    return (await db.listLinks(this.db, userId)).map((link) => ({
      id: link.id,
      provider: link.provider,
      provider_name: this.deps.providers.settings(link.provider)?.name ?? link.provider,
      email: link.email,
      created_at: link.created_at,
      last_used_at: link.last_used_at,
    }));
  }

  /** Removes a link of the caller's own; the last way into an account without a password stays. */
  async unlink(principal: Principal, linkId: string, ctx: RequestContext): Promise<void> {
    const links = await db.listLinks(this.db, principal.userId);
    const link = links.find((l) => l.id === linkId);
    if (!link) throw notFound('No such linked provider.');
    const user = await users.findUserById(this.db, principal.userId);
    if (user?.password_hash === NO_PASSWORD && links.length === 1) {
      this.audit({ action: 'sso.unlink', outcome: 'denied', actorId: principal.userId, target: link.id, detail: { provider: link.provider, reason: 'last-sign-in' } }, ctx);
      throw conflict('This is the only way to sign in to your account; it cannot be removed.');
    }
    await db.deleteLink(this.db, link.id, principal.userId);
    this.audit({ action: 'sso.unlink', outcome: 'success', actorId: principal.userId, target: link.id, detail: { provider: link.provider } }, ctx);
  }

  recordRpLogout(userId: string, sessionId: string, ctx: RequestContext): void {
    this.audit({ action: 'sso.logout', outcome: 'success', actorId: userId, target: sessionId, detail: { via: 'rp-initiated' } }, ctx);
  }

  /** RP-initiated logout: where to send the browser so the provider ends its session too (null for other sessions). */
  async logoutUrl(sessionId: string): Promise<string | null> {
    const row = await db.findSsoSession(this.db, sessionId);
    const provider = row && this.deps.providers.settings(row.provider);
    if (!provider) return null;
    const config = await this.deps.providers.configuration(provider);
    if (!config.serverMetadata().end_session_endpoint) return null;
    return oidc.buildEndSessionUrl(config, { client_id: provider.clientId, post_logout_redirect_uri: `${this.deps.publicUrl}/signin` }).href;
  }

  /**
   * OpenID Connect Back-Channel Logout 1.0 §2.6: the logout token is a JWT signed by the provider's
   * keys, for this client, recent, naming `sub` and/or `sid`, carrying the back-channel logout event
   * and no nonce, and used once. The Celforge sessions it names are revoked.
   */
  async backchannelLogout(providerId: string, logoutToken: string, ctx: RequestContext): Promise<number> {
    const provider = this.provider(providerId);
    let claims: JWTPayload;
    try {
      claims = await this.verifyLogoutToken(provider, logoutToken);
    } catch (error) {
      const reason = error instanceof Refusal ? error.reason : ((error as { code?: string }).code ?? 'invalid');
      this.audit({ action: 'sso.logout', outcome: 'failure', detail: { provider: provider.id, via: 'backchannel', reason } }, ctx);
      if (error instanceof HttpProblem && error.status === 503) throw error;
      throw new HttpProblem(400, 'invalid-logout-token', 'The logout token is not valid.');
    }
    const sessions = await db.liveSessionsFor(this.db, claims.iss!, { subject: claims.sub, sid: claims.sid as string | undefined });
    const at = Date.now();
    for (const session of sessions) {
      if (await users.revokeSession(this.db, session.id, { reason: 'sso-logout', now: iso(at) })) {
        await this.deps.revocations.publish({ kind: 'session', sid: session.id, userId: session.user_id, at });
      }
    }
    this.audit({ action: 'sso.logout', outcome: 'success', target: claims.sub ?? null, detail: { provider: provider.id, via: 'backchannel', sessions: sessions.length } }, ctx);
    return sessions.length;
  }

  private async verifyLogoutToken(provider: SsoProviderSettings, token: string): Promise<JWTPayload> {
    const config = await this.deps.providers.configuration(provider);
    const metadata = config.serverMetadata();
    if (!metadata.jwks_uri) throw refused('no-jwks');
    let keys = this.jwks.get(provider.id);
    if (!keys) {
      keys = createRemoteJWKSet(new URL(metadata.jwks_uri));
      this.jwks.set(provider.id, keys);
    }
    const { payload, protectedHeader } = await jwtVerify(token, keys, {
      issuer: metadata.issuer,
      audience: provider.clientId,
      requiredClaims: ['iat', 'jti', 'events'],
      maxTokenAge: '10m',
      clockTolerance: 30,
    });
    if (protectedHeader.typ !== undefined && protectedHeader.typ.toLowerCase() !== 'logout+jwt' && protectedHeader.typ.toLowerCase() !== 'application/logout+jwt') {
      throw refused('typ');
    }
    const events = payload.events as Record<string, unknown> | undefined;
    if (!events || typeof events !== 'object' || typeof events[BACKCHANNEL_EVENT] !== 'object' || events[BACKCHANNEL_EVENT] === null) throw refused('events');
    if (payload.sub === undefined && typeof payload.sid !== 'string') throw refused('no-sub-or-sid');
    if ('nonce' in payload) throw refused('nonce');
    const now = Date.now();
    for (const [jti, until] of this.seenLogoutTokens) if (until <= now) this.seenLogoutTokens.delete(jti);
    const key = `${provider.id}:${payload.jti}`;
    if (this.seenLogoutTokens.has(key)) throw refused('replayed');
    this.seenLogoutTokens.set(key, now + 11 * 60_000);
    return payload;
  }
}

/** What the library refused, for the audit trail: an OAuth error code, or the claim that failed its check. */
function libraryReason(error: unknown): string {
  type Named = { claim?: unknown; attribute?: unknown; message?: string };
  const e = error as { error?: unknown; code?: unknown; cause?: Named & { cause?: Named } };
  if (typeof e.error === 'string') return e.error.slice(0, 60);
  // openid-client wraps the check that failed: its cause names the claim
  const named = e.cause?.claim ?? e.cause?.cause?.claim ?? /"([a-z_]+)"/.exec(e.cause?.message ?? '')?.[1];
  const claim = typeof named === 'string' ? `:${named}` : '';
  return typeof e.code === 'string' ? `${e.code}${claim}`.slice(0, 80) : 'rejected';
}
