import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Auditor, AuditEvent } from '../audit/events.js';
import type { Config } from '../config/config.js';
import type { Store } from '../db/database.js';
import type { Principal } from '../access/principal.js';
import { HttpProblem, conflict, notFound } from '../http/problem.js';
import type { Encryptor } from './encryption.js';
import type { SigningKeySet } from './keys.js';
import { assertAcceptablePassword, hashPassword, verifyPassword } from './passwords.js';
import type { RevocationPublisher } from './revocations.js';
import * as db from './store.js';
import type { LoginThrottle, ThrottleKey } from './throttle.js';
import type { Role } from '../access/principal.js';
import type { RequestContext } from '../http/request-context.js';
import { issueAccessToken, type AccessTokenVerifier } from './tokens.js';
import {
  checkTotp,
  hashRecoveryCode,
  isWellFormedRecoveryCode,
  newRecoveryCodes,
  newTotpSecret,
  otpauthUri,
  qrSvg,
} from './totp.js';

/** A refresh token unused this long ends the session (idle lifetime). */
export const SESSION_IDLE_SECONDS = 7 * 86_400;
/** No session outlives this, however often it is refreshed (absolute lifetime). */
export const SESSION_ABSOLUTE_SECONDS = 30 * 86_400;
/** Admin operations need a second factor verified this recently in the session. */
export const STEP_UP_SECONDS = 15 * 60;

/**
 * A spent refresh token presented again this soon after its rotation, while its successor is unused,
 * is taken for a retry whose first answer was lost rather than for a stolen token.
 */
export const REFRESH_RETRY_SECONDS = 30;

const REFRESH_TOKEN = /^[A-Za-z0-9_-]{43}$/;
const CODE = /^[0-9]{6}$/;

/** Where a request came from, for the audit trail and throttling. */
export type { RequestContext } from '../http/request-context.js';

export interface TokenPair {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token: string;
  session_id: string;
}

export interface IdentityDeps {
  config: Config;
  store: Store;
  keys: () => SigningKeySet;
  revocations: RevocationPublisher;
  throttle: LoginThrottle;
  encryptor: Encryptor;
  audit: Auditor;
  /** an argon2 hash of a random password: unknown e-mails are checked against it, for equal timing */
  dummyHash: string;
  /** told of every access token issued here, so its first use skips the signature check */
  tokenCache?: Pick<AccessTokenVerifier, 'remember'>;
  /** drops the user's cached API-key rows on every instance, and resolves once they have */
  apiKeys?: { evictUserKeys(userId: string): Promise<void> };
  /** counts a refused sign-in (celforge_signin_failures_total); a second-factor prompt is not one */
  signinFailed?: (reason: 'credentials' | 'disabled' | 'otp' | 'throttled') => void;
  /** passkeys, a second factor besides TOTP (src/identity/passkeys/) */
  passkeys?: SecondFactorPasskeys;
}

export interface SecondFactorPasskeys {
  has(userId: string): Promise<boolean>;
  /** a passkey challenge bound to this user, after their password was right */
  secondFactorOptions(userId: string): Promise<{ attempt_id: string; options: unknown }>;
}

const invalidCredentials = () =>
  new HttpProblem(401, 'invalid-credentials', 'The e-mail, password or code is not right.', {
    headers: { 'www-authenticate': 'Bearer realm="celforge"' },
  });
const invalidRefresh = () =>
  new HttpProblem(401, 'invalid-grant', 'The refresh token is invalid or expired; sign in again.', {
    headers: { 'www-authenticate': 'Bearer realm="celforge", error="invalid_token"' },
  });

export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
const iso = (ms = Date.now()) => new Date(ms).toISOString();

/** Users, passwords, sessions, refresh tokens, second factors: the rules of signing in and staying signed in. */
export class IdentityService {
  constructor(private readonly deps: IdentityDeps) {}

  private get db() {
    return this.deps.store.db;
  }

  private audit(event: AuditEvent, ctx?: RequestContext): void {
    this.deps.audit.record({ ip: ctx?.ip ?? null, requestId: ctx?.requestId ?? null, ...event });
  }

  // ---- users

  async createUser(input: { email: string; password: string; role: Role }, actor?: { id: string; ctx?: RequestContext }) {
    const email = normaliseEmail(input.email);
    if (!/^[^\s@]{1,64}@[^\s@]{1,253}$/.test(email)) throw new HttpProblem(422, 'invalid-email', 'That is not an e-mail address.');
    assertAcceptablePassword(input.password, email);
    if (await db.findUserByEmail(this.db, email)) throw conflict('A user with that e-mail exists.');
    const user = db.newUserRow({ email, password_hash: await hashPassword(input.password), role: input.role });
    try {
      await db.insertUser(this.db, user);
    } catch {
      throw conflict('A user with that e-mail exists.');
    }
    this.audit({ action: 'user.create', outcome: 'success', actorId: actor?.id ?? null, target: user.id, detail: { role: user.role } }, actor?.ctx);
    return user;
  }

  /**
   * First start: when no user exists, creates the admin from CELFORGE_ADMIN_EMAIL/_PASSWORD, or
   * with a random password that the caller prints once.
   */
  async ensureFirstAdmin(): Promise<{ email: string; generatedPassword?: string } | null> {
    if ((await db.countUsers(this.db)) > 0) return null;
    const email = this.deps.config.adminEmail ?? 'admin@celforge.local';
    const generated = this.deps.config.adminPassword ? undefined : randomBytes(18).toString('base64url');
    try {
      await this.createUser({ email, password: this.deps.config.adminPassword ?? generated!, role: 'admin' });
    } catch (error) {
      // Several instances starting on an empty store: one of them makes the admin, the others go on.
      if (error instanceof HttpProblem && error.status === 409) return null;
      throw error;
    }
    return { email: normaliseEmail(email), generatedPassword: generated };
  }

  listUsers(options: { after?: string; limit: number; search?: string }) {
    return db.listUsers(this.db, options);
  }

  /** An administrator's new user: with the password given, or a random one the caller shows once. */
  async adminCreateUser(input: { email: string; password?: string; role: Role }, actor: { id: string; ctx?: RequestContext }) {
    const generated = input.password === undefined ? randomBytes(18).toString('base64url') : undefined;
    const user = await this.createUser({ ...input, password: input.password ?? generated! }, actor);
    return { user, generatedPassword: generated };
  }

  async adminListSessions(userId: string) {
    if (!(await db.findUserById(this.db, userId))) throw notFound('No such user.');
    return db.listLiveSessions(this.db, userId, iso());
  }

  /** Ends one session of a user; a session of another user is a 404 like one that does not exist. */
  async adminRevokeSession(userId: string, sessionId: string, actor: { id: string; ctx?: RequestContext }): Promise<void> {
    const at = Date.now();
    const ended = await db.revokeSession(this.db, sessionId, { userId, reason: 'admin', now: iso(at) });
    if (!ended) throw notFound('No such session.');
    await this.deps.revocations.publish({ kind: 'session', sid: sessionId, userId, at });
    this.audit({ action: 'admin.user.session.revoke', outcome: 'success', actorId: actor.id, target: userId, detail: { session: sessionId } }, actor.ctx);
  }

  findUserByEmail(email: string) {
    return db.findUserByEmail(this.db, normaliseEmail(email));
  }

  /** Role and disabled changes take effect on the next request of every session of the user. */
  async updateUser(userId: string, change: { role?: Role; disabled?: boolean }, actor: { id: string; ctx?: RequestContext }) {
    if (userId === actor.id) throw conflict('Change your own role or state through another administrator.');
    const user = await db.findUserById(this.db, userId);
    if (!user) throw notFound('No such user.');
    const at = Date.now();
    const role = change.role ?? user.role;
    const disabled = change.disabled ?? user.disabled === 1;
    await db.updateUser(this.db, userId, { role, disabled: disabled ? 1 : 0, updated_at: iso(at) });
    await this.deps.revocations.publish({ kind: 'user', userId, role, disabled, at });
    if (disabled) await this.revokeAllSessions(userId, 'user-disabled');
    else await this.evictApiKeys(userId);
    if (change.role !== undefined && change.role !== user.role) {
      this.audit({ action: 'admin.user.role', outcome: 'success', actorId: actor.id, target: userId, detail: { from: user.role, to: role } }, actor.ctx);
    }
    if (change.disabled !== undefined && change.disabled !== (user.disabled === 1)) {
      this.audit({ action: disabled ? 'admin.user.disable' : 'admin.user.enable', outcome: 'success', actorId: actor.id, target: userId }, actor.ctx);
    }
    return (await db.findUserById(this.db, userId))!;
  }

  /**
   * Ends the user's sessions (all but `except`) and drops their cached API-key rows on every
   * instance: disabling, password changes and "sign out everywhere" reach keys at once too.
   */
  async revokeAllSessions(userId: string, reason: string, except?: string): Promise<number> {
    const at = Date.now();
    const ids = await db.revokeUserSessions(this.db, userId, { except, reason, now: iso(at) });
    for (const sid of ids) await this.deps.revocations.publish({ kind: 'session', sid, userId, at });
    await this.evictApiKeys(userId);
    return ids.length;
  }

  /** Key rows carry the user's role, state and second factor: after a change, no instance may serve a cached one. */
  private async evictApiKeys(userId: string): Promise<void> {
    await this.deps.apiKeys?.evictUserKeys(userId);
  }

  /** Admin: turns a user's second factor off (lost device); their admin-scope keys lapse until they enrol again. */
  async adminResetTotp(userId: string, actor: { id: string; ctx?: RequestContext }): Promise<void> {
    if (userId === actor.id) throw conflict('Reset your own second factor through another administrator.');
    const user = await db.findUserById(this.db, userId);
    if (!user) throw notFound('No such user.');
    await db.updateUser(this.db, userId, { totp_enabled: 0, totp_secret: null, totp_last_step: null, updated_at: iso() });
    await db.deleteRecoveryCodes(this.db, userId);
    await this.evictApiKeys(userId);
    this.audit({ action: 'admin.user.2fa.reset', outcome: 'success', actorId: actor.id, target: userId, detail: { was_enabled: user.totp_enabled === 1 } }, actor.ctx);
  }

  async adminRevokeSessions(userId: string, actor: { id: string; ctx?: RequestContext }): Promise<number> {
    if (!(await db.findUserById(this.db, userId))) throw notFound('No such user.');
    const count = await this.revokeAllSessions(userId, 'admin');
    this.audit({ action: 'admin.user.sessions.revoke', outcome: 'success', actorId: actor.id, target: userId, detail: { count } }, actor.ctx);
    return count;
  }

  // ---- login, sessions, tokens

  /** Per (account, address) and per address refuse; the account-wide count only slows unknown addresses. */
  private loginKeys(email: string, ip: string): ThrottleKey[] {
    const account = sha256(email);
    return [
      { kind: 'pair', id: sha256(`${account}:${ip}`) },
      { kind: 'client', id: ip },
      { kind: 'account', id: account },
    ];
  }

  async login(input: { email: string; password: string; otp?: string }, ctx: RequestContext): Promise<TokenPair> {
    const email = normaliseEmail(input.email);
    const keys = this.loginKeys(email, ctx.ip);
    const gate = await this.deps.throttle.attempt(keys);
    if (!gate.allowed) {
      this.audit({ action: 'auth.login', outcome: 'denied', target: email, detail: { reason: 'throttled' } }, ctx);
      this.deps.signinFailed?.('throttled');
      throw new HttpProblem(429, 'login-throttled', 'Too many sign-in attempts; wait before trying again.', {
        headers: { 'retry-after': String(gate.retryAfterSeconds) },
        extensions: { retry_after: gate.retryAfterSeconds },
      });
    }
    if (gate.delayMs > 0) await sleep(gate.delayMs);
    const user = await db.findUserByEmail(this.db, email);
    // Unknown e-mails cost one argon2 verification too, so timing does not tell who has an account.
    const passwordOk = await verifyPassword(user?.password_hash ?? this.deps.dummyHash, input.password);
    if (!user || !passwordOk || user.disabled === 1) {
      this.audit(
        { action: 'auth.login', outcome: 'failure', actorId: user?.id ?? null, target: email, detail: { reason: !user ? 'unknown' : !passwordOk ? 'password' : 'disabled' } },
        ctx,
      );
      this.deps.signinFailed?.(user && passwordOk ? 'disabled' : 'credentials');
      throw invalidCredentials();
    }
    let mfa = false;
    const hasPasskey = (await this.deps.passkeys?.has(user.id)) ?? false;
    if (user.totp_enabled === 1 || hasPasskey) {
      if (input.otp === undefined) {
        this.audit({ action: 'auth.login', outcome: 'failure', actorId: user.id, target: email, detail: { reason: 'otp-missing' } }, ctx);
        // With a passkey, the answer carries a challenge bound to this user: POST /api/auth/passkeys/signin finishes.
        const passkey = hasPasskey ? await this.deps.passkeys!.secondFactorOptions(user.id) : undefined;
        const headers = { 'www-authenticate': 'Bearer realm="celforge"' };
        if (user.totp_enabled !== 1) {
          throw new HttpProblem(401, 'passkey-required', 'Confirm with your passkey.', { headers, extensions: { passkey } });
        }
        throw new HttpProblem(401, 'otp-required', 'Enter the code from your authenticator app (or a recovery code).', {
          headers,
          extensions: passkey ? { passkey } : undefined,
        });
      }
      if (!(await this.checkSecondFactor(user, input.otp))) {
        this.audit({ action: 'auth.login', outcome: 'failure', actorId: user.id, target: email, detail: { reason: 'otp' } }, ctx);
        this.deps.signinFailed?.('otp');
        throw invalidCredentials();
      }
      mfa = true;
    }
    await this.deps.throttle.succeeded(keys);
    const pair = await this.openSession(user, ctx, mfa);
    this.audit({ action: 'auth.login', outcome: 'success', actorId: user.id, target: pair.session_id, detail: { mfa } }, ctx);
    return pair;
  }

  /** The end of a sign-in by another way than the password form (a passkey): as a successful login. */
  async completeSignIn(user: db.UserRow, ctx: RequestContext, method: 'passkey'): Promise<TokenPair> {
    await this.deps.throttle.succeeded(this.loginKeys(user.email, ctx.ip));
    const pair = await this.openSession(user, ctx, true, undefined, method);
    this.audit({ action: 'auth.login', outcome: 'success', actorId: user.id, target: pair.session_id, detail: { mfa: true, method } }, ctx);
    return pair;
  }

  /** A new session with its first token pair (login, and `celforge token`). */
  async openSession(user: db.UserRow, ctx: Partial<RequestContext>, mfa: boolean, accessTtlSeconds?: number, mfaVia = 'totp'): Promise<TokenPair> {
    const now = Date.now();
    const session: db.SessionRow = {
      id: randomUUID(),
      user_id: user.id,
      created_at: iso(now),
      last_seen_at: iso(now),
      expires_at: iso(now + SESSION_ABSOLUTE_SECONDS * 1000),
      revoked_at: null,
      revoked_reason: null,
      mfa_at: mfa ? iso(now) : null,
      mfa_via: mfa ? mfaVia : null,
      user_agent: ctx.userAgent?.slice(0, 300) ?? null,
      ip: ctx.ip ?? null,
    };
    await db.insertSession(this.db, session);
    return this.issuePair(user, session.id, Date.parse(session.expires_at), accessTtlSeconds);
  }

  private async issuePair(
    user: { id: string; email: string; role: Role },
    sessionId: string,
    sessionEnd: number,
    accessTtlSeconds = this.deps.config.accessTokenTtlSeconds,
  ): Promise<TokenPair> {
    const refresh = newRefreshToken(sessionId, sessionEnd, Date.now());
    await db.insertRefreshToken(this.db, refresh.row);
    return this.withAccessToken(user, sessionId, sessionEnd, refresh.token, accessTtlSeconds);
  }

  private async withAccessToken(
    user: { id: string; email: string; role: Role },
    sessionId: string,
    sessionEnd: number,
    refreshToken: string,
    accessTtlSeconds = this.deps.config.accessTokenTtlSeconds,
  ): Promise<TokenPair> {
    const ttl = Math.max(1, Math.min(accessTtlSeconds, Math.floor((sessionEnd - Date.now()) / 1000)));
    const { token, claims } = await issueAccessToken(this.deps.keys(), { userId: user.id, email: user.email, role: user.role, sessionId }, ttl);
    this.deps.tokenCache?.remember(token, claims);
    return { access_token: token, token_type: 'Bearer', expires_in: ttl, refresh_token: refreshToken, session_id: sessionId };
  }

  /**
   * Rotates a refresh token (RFC 9700 §4.14.2): the presented one is spent and its successor stored
   * in one step. Presenting a spent one again ends the whole session, including the pair just
   * issued — except a retry of a rotation whose answer was lost (see retryRotation).
   */
  async refresh(refreshToken: string, ctx: RequestContext): Promise<TokenPair> {
    if (!REFRESH_TOKEN.test(refreshToken)) throw invalidRefresh();
    const hash = sha256(refreshToken);
    let row = await db.findRefreshToken(this.db, hash);
    if (!row) {
      this.audit({ action: 'auth.refresh', outcome: 'failure', detail: { reason: 'unknown' } }, ctx);
      throw invalidRefresh();
    }
    const now = Date.now();
    if (row.used_at === null) {
      if (!isUsable(row, now)) {
        if (await db.spendRefreshToken(this.db, hash, iso(now))) {
          this.audit({ action: 'auth.refresh', outcome: 'failure', actorId: row.user_id, target: row.session_id, detail: { reason: 'ended' } }, ctx);
          throw invalidRefresh();
        }
      } else {
        const sessionEnd = Date.parse(row.session_expires_at);
        const successor = newRefreshToken(row.session_id, sessionEnd, now);
        if (await db.rotateRefreshToken(this.db, hash, successor.row)) {
          await db.touchSession(this.db, row.session_id, iso(now));
          const pair = await this.withAccessToken({ id: row.user_id, email: row.email, role: row.role }, row.session_id, sessionEnd, successor.token);
          this.audit({ action: 'auth.refresh', outcome: 'success', actorId: row.user_id, target: row.session_id }, ctx);
          return pair;
        }
      }
      // Another request spent it a moment ago: what it became decides below.
      row = await db.findRefreshToken(this.db, hash);
      if (!row) throw invalidRefresh();
    }
    const retried = await this.retryRotation(row, hash, now, ctx);
    if (retried) return retried;
    await this.endSession(row.session_id, row.user_id, 'refresh-reuse');
    this.audit({ action: 'auth.refresh.reuse', outcome: 'denied', actorId: row.user_id, target: row.session_id }, ctx);
    throw invalidRefresh();
  }

  /**
   * A spent token presented again may be a retry, not a theft: the answer to its rotation never
   * reached the client (a tab closed or reloaded mid-request), which still holds it. Within
   * REFRESH_RETRY_SECONDS of that rotation, while the successor it made is unused, the successor is
   * withdrawn and a new one issued in its place (the family keeps exactly one live token). One retry
   * per rotation: a second one is refused, the session left alone. Anything else is reuse
   * (undefined here).
   */
  private async retryRotation(row: db.RefreshTokenLookup, hash: string, now: number, ctx: RequestContext): Promise<TokenPair | undefined> {
    const rotatedAt = row.used_at === null ? Number.NaN : Date.parse(row.used_at);
    // Only a token spent by a rotation (before its expiry), recently, in a session still usable, qualifies.
    if (!(Date.parse(row.expires_at) > rotatedAt) || now - rotatedAt > REFRESH_RETRY_SECONDS * 1000 || !isSessionUsable(row, now)) return undefined;
    const successors = async () => (await db.refreshTokensSince(this.db, row.session_id, row.used_at!)).filter((t) => t.token_hash !== hash);
    const audit = (outcome: 'success' | 'denied', detail: Record<string, unknown>) =>
      this.audit({ action: 'auth.refresh.retry', outcome, actorId: row.user_id, target: row.session_id, detail: { after_ms: now - rotatedAt, ...detail } }, ctx);

    let after = await successors();
    if (after.length === 1 && after[0]!.used_at === null) {
      const sessionEnd = Date.parse(row.session_expires_at);
      // Strictly after the successor it replaces: a retry that started before the rotation finished
      // must still be found after it, in order, by refreshTokensSince.
      const replacedAt = Math.max(Date.now(), Date.parse(after[0]!.created_at) + 1);
      const replacement = newRefreshToken(row.session_id, sessionEnd, replacedAt);
      if (await db.replaceLiveRefreshToken(this.db, after[0]!.token_hash, replacement.row)) {
        await db.touchSession(this.db, row.session_id, iso(now));
        const pair = await this.withAccessToken({ id: row.user_id, email: row.email, role: row.role }, row.session_id, sessionEnd, replacement.token);
        audit('success', {});
        return pair;
      }
      // Another request changed the family first: a retry of the same rotation, or the successor's own use.
      after = await successors();
    }
    if (after.length === 2 && isWithdrawn(after[0]!) && after[1]!.used_at === null) {
      audit('denied', { reason: 'already-retried' });
      throw invalidRefresh();
    }
    return undefined;
  }

  private async endSession(sessionId: string, userId: string, reason: string): Promise<boolean> {
    const at = Date.now();
    const ended = await db.revokeSession(this.db, sessionId, { reason, now: iso(at) });
    await this.deps.revocations.publish({ kind: 'session', sid: sessionId, userId, at });
    return ended;
  }

  async logout(principal: Principal, ctx: RequestContext): Promise<void> {
    if (!principal.sessionId) throw new HttpProblem(400, 'no-session', 'This credential has no session to end.');
    await this.endSession(principal.sessionId, principal.userId, 'logout');
    this.audit({ action: 'auth.logout', outcome: 'success', actorId: principal.userId, target: principal.sessionId }, ctx);
  }

  listSessions(userId: string) {
    return db.listLiveSessions(this.db, userId, iso());
  }

  /** Someone else's session is a 404, exactly like one that does not exist. */
  async revokeOwnSession(principal: Principal, sessionId: string, ctx: RequestContext): Promise<void> {
    const at = Date.now();
    const ended = await db.revokeSession(this.db, sessionId, { userId: principal.userId, reason: 'user', now: iso(at) });
    if (!ended) throw notFound('No such session.');
    await this.deps.revocations.publish({ kind: 'session', sid: sessionId, userId: principal.userId, at });
    this.audit({ action: 'auth.session.revoke', outcome: 'success', actorId: principal.userId, target: sessionId }, ctx);
  }

  async revokeOtherSessions(principal: Principal, ctx: RequestContext): Promise<number> {
    const count = await this.revokeAllSessions(principal.userId, 'user', principal.sessionId ?? undefined);
    this.audit({ action: 'auth.session.revoke-others', outcome: 'success', actorId: principal.userId, detail: { count } }, ctx);
    return count;
  }

  async changePassword(principal: Principal, input: { current_password: string; new_password: string }, ctx: RequestContext): Promise<void> {
    const user = await db.findUserById(this.db, principal.userId);
    if (!user) throw notFound();
    await this.confirmPassword(user, input.current_password, 'auth.password', ctx);
    assertAcceptablePassword(input.new_password, user.email);
    await db.updateUser(this.db, user.id, { password_hash: await hashPassword(input.new_password), updated_at: iso() });
    const ended = await this.revokeAllSessions(user.id, 'password-changed', principal.sessionId ?? undefined);
    this.audit({ action: 'auth.password', outcome: 'success', actorId: user.id, detail: { sessions_ended: ended } }, ctx);
  }

  /** The signed-in user proves they know the password again (password change, enabling 2FA): throttled per user. */
  async confirmPassword(user: db.UserRow, password: string, action: string, ctx: RequestContext): Promise<void> {
    const keys: ThrottleKey[] = [{ kind: 'factor', id: `password:${user.id}` }];
    const gate = await this.deps.throttle.attempt(keys);
    if (!gate.allowed) {
      throw new HttpProblem(429, 'throttled', 'Too many attempts; wait before trying again.', { headers: { 'retry-after': String(gate.retryAfterSeconds) } });
    }
    if (!(await verifyPassword(user.password_hash, password))) {
      this.audit({ action, outcome: 'failure', actorId: user.id, detail: { reason: 'password' } }, ctx);
      throw new HttpProblem(403, 'wrong-password', 'The current password is not right.');
    }
    await this.deps.throttle.succeeded(keys);
  }

  // ---- second factor

  /** A TOTP code (once per time step) or an unused recovery code; both spent atomically. */
  private async checkSecondFactor(user: db.UserRow, code: string): Promise<boolean> {
    if (CODE.test(code)) {
      if (!user.totp_secret) return false;
      const secret = this.deps.encryptor.decryptText(user.totp_secret, user.id);
      const result = await checkTotp(secret, code, { lastUsedStep: user.totp_last_step });
      return result.ok && (await db.claimTotpStep(this.db, user.id, result.step, iso()));
    }
    if (user.totp_enabled === 1 && isWellFormedRecoveryCode(code)) {
      return db.useRecoveryCode(this.db, user.id, hashRecoveryCode(code), iso());
    }
    return false;
  }

  private async gateSecondFactor(user: db.UserRow, code: string, action: string, ctx: RequestContext): Promise<void> {
    const keys: ThrottleKey[] = [{ kind: 'factor', id: `2fa:${user.id}` }];
    const gate = await this.deps.throttle.attempt(keys);
    if (!gate.allowed) {
      this.audit({ action, outcome: 'denied', actorId: user.id, detail: { reason: 'throttled' } }, ctx);
      throw new HttpProblem(429, 'throttled', 'Too many code attempts; wait before trying again.', { headers: { 'retry-after': String(gate.retryAfterSeconds) } });
    }
    if (!(await this.checkSecondFactor(user, code))) {
      this.audit({ action, outcome: 'failure', actorId: user.id }, ctx);
      throw new HttpProblem(403, 'invalid-code', 'The code is not right, or it was already used.');
    }
    await this.deps.throttle.succeeded(keys);
  }

  async totpSetup(principal: Principal, ctx: RequestContext) {
    const user = await db.findUserById(this.db, principal.userId);
    if (!user) throw notFound();
    if (user.totp_enabled === 1) throw conflict('Two-factor sign-in is already on; turn it off first.');
    const secret = newTotpSecret();
    await db.updateUser(this.db, user.id, { totp_secret: this.deps.encryptor.encrypt(secret, user.id), totp_last_step: null, updated_at: iso() });
    const uri = otpauthUri({ secret, accountName: user.email });
    this.audit({ action: 'auth.2fa.setup', outcome: 'success', actorId: user.id }, ctx);
    return { secret, otpauth_uri: uri, qr_svg: await qrSvg(uri) };
  }

  /** Needs the password again: a stolen session alone must not be able to put its owner's sign-in behind a factor they lack. */
  async totpEnable(principal: Principal, input: { code: string; password: string }, ctx: RequestContext): Promise<string[]> {
    const { code } = input;
    const user = await db.findUserById(this.db, principal.userId);
    if (!user) throw notFound();
    if (user.totp_enabled === 1) throw conflict('Two-factor sign-in is already on.');
    if (!user.totp_secret) throw conflict('Start with POST /api/auth/totp/setup.');
    await this.confirmPassword(user, input.password, 'auth.2fa.enable', ctx);
    if (!CODE.test(code)) throw new HttpProblem(403, 'invalid-code', 'The code is not right, or it was already used.');
    await this.gateSecondFactor(user, code, 'auth.2fa.enable', ctx);
    const codes = newRecoveryCodes();
    await db.replaceRecoveryCodes(this.db, user.id, codes.map(hashRecoveryCode));
    await db.updateUser(this.db, user.id, { totp_enabled: 1, updated_at: iso() });
    if (principal.sessionId) await db.setSessionMfa(this.db, principal.sessionId, iso(), 'totp');
    await this.evictApiKeys(user.id);
    this.audit({ action: 'auth.2fa.enable', outcome: 'success', actorId: user.id }, ctx);
    return codes;
  }

  async totpDisable(principal: Principal, code: string, ctx: RequestContext): Promise<void> {
    const user = await db.findUserById(this.db, principal.userId);
    if (!user) throw notFound();
    if (user.totp_enabled !== 1) throw conflict('Two-factor sign-in is not on.');
    await this.gateSecondFactor(user, code, 'auth.2fa.disable', ctx);
    await db.updateUser(this.db, user.id, { totp_enabled: 0, totp_secret: null, totp_last_step: null, updated_at: iso() });
    await db.deleteRecoveryCodes(this.db, user.id);
    await this.evictApiKeys(user.id);
    this.audit({ action: 'auth.2fa.disable', outcome: 'success', actorId: user.id }, ctx);
  }

  async totpStatus(userId: string): Promise<{ enabled: boolean; recovery_codes_left: number }> {
    const user = await db.findUserById(this.db, userId);
    if (!user) throw notFound();
    const enabled = user.totp_enabled === 1;
    return { enabled, recovery_codes_left: enabled ? await db.countUnusedRecoveryCodes(this.db, user.id) : 0 };
  }

  /** Ten new recovery codes for a code from the authenticator (or an unused recovery code); the old ones stop working. */
  async regenerateRecoveryCodes(principal: Principal, code: string, ctx: RequestContext): Promise<string[]> {
    const user = await db.findUserById(this.db, principal.userId);
    if (!user) throw notFound();
    if (user.totp_enabled !== 1) throw conflict('Two-factor sign-in is not on.');
    await this.gateSecondFactor(user, code, 'auth.2fa.recovery-codes', ctx);
    const codes = newRecoveryCodes();
    await db.replaceRecoveryCodes(this.db, user.id, codes.map(hashRecoveryCode));
    this.audit({ action: 'auth.2fa.recovery-codes', outcome: 'success', actorId: user.id }, ctx);
    return codes;
  }

  /** Verifies a second factor in this session: admin operations are allowed for STEP_UP_SECONDS. */
  async stepUp(principal: Principal, code: string, ctx: RequestContext): Promise<{ mfa_at: string; valid_until: string }> {
    if (!principal.sessionId) throw new HttpProblem(400, 'no-session', 'Step-up is for session tokens.');
    const user = await db.findUserById(this.db, principal.userId);
    if (!user) throw notFound();
    if (user.totp_enabled !== 1) throw enrolProblem();
    await this.gateSecondFactor(user, code, 'auth.2fa.step-up', ctx);
    const now = Date.now();
    await db.setSessionMfa(this.db, principal.sessionId, iso(now), 'totp');
    this.audit({ action: 'auth.2fa.step-up', outcome: 'success', actorId: user.id, target: principal.sessionId }, ctx);
    return { mfa_at: iso(now), valid_until: iso(now + STEP_UP_SECONDS * 1000) };
  }

  /** TOTP or a passkey. */
  async hasSecondFactor(user: Pick<db.UserRow, 'id' | 'totp_enabled'>): Promise<boolean> {
    return user.totp_enabled === 1 || ((await this.deps.passkeys?.has(user.id)) ?? false);
  }

  /** Whether a session may do admin work now; a problem telling what is missing otherwise. */
  async assertSteppedUp(principal: Principal): Promise<void> {
    if (!principal.sessionId) return;
    const [session, user] = await Promise.all([db.findSession(this.db, principal.sessionId), db.findUserById(this.db, principal.userId)]);
    const mfaAt = session?.mfa_at ? Date.parse(session.mfa_at) : 0;
    const recent = Date.now() - mfaAt <= STEP_UP_SECONDS * 1000;
    // A second factor the OpenID provider asserted at sign-in counts, though none is enrolled here.
    const providerFactor = recent && session?.mfa_via === 'provider';
    if (!user || (!providerFactor && !(await this.hasSecondFactor(user)))) throw enrolProblem();
    if (!recent) {
      throw new HttpProblem(403, 'step-up-required', 'Confirm with your second factor (POST /api/auth/step-up, or /api/auth/passkeys/step-up) to do administrative work.');
    }
  }

  /** `celforge token`: a new session and an access token for scripts. */
  async mintToken(email: string, ttlSeconds: number): Promise<TokenPair> {
    const user = await db.findUserByEmail(this.db, normaliseEmail(email));
    if (!user || user.disabled === 1) throw notFound('No such active user.');
    const pair = await this.openSession(user, { ip: 'cli' }, false, ttlSeconds);
    this.audit({ action: 'auth.token.mint', outcome: 'success', actorId: user.id, target: pair.session_id, detail: { via: 'cli' } });
    return pair;
  }
}

/** A new refresh token for a session: the token (given out once) and its row (only the hash is stored). */
function newRefreshToken(sessionId: string, sessionEnd: number, now: number): { token: string; row: db.RefreshTokenRow } {
  const token = randomBytes(32).toString('base64url');
  const row: db.RefreshTokenRow = {
    token_hash: sha256(token),
    session_id: sessionId,
    created_at: iso(now),
    expires_at: iso(Math.min(now + SESSION_IDLE_SECONDS * 1000, sessionEnd)),
    used_at: null,
  };
  return { token, row };
}

function isSessionUsable(row: db.RefreshTokenLookup, now: number): boolean {
  return row.revoked_at === null && Date.parse(row.session_expires_at) > now && row.disabled !== 1;
}

function isUsable(row: db.RefreshTokenLookup, now: number): boolean {
  return isSessionUsable(row, now) && Date.parse(row.expires_at) > now;
}

/** Withdrawn by a retried rotation: spent and expired at the same instant (db.replaceLiveRefreshToken). */
function isWithdrawn(token: { used_at: string | null; expires_at: string }): boolean {
  return token.used_at !== null && token.used_at === token.expires_at;
}

function enrolProblem(): HttpProblem {
  return new HttpProblem(403, 'enrol-2fa', 'Administrative work needs a second factor: add a passkey (POST /api/auth/passkeys/registration/options) or set up TOTP (POST /api/auth/totp/setup and /totp/enable).');
}
