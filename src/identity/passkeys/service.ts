import { randomBytes, randomUUID } from 'node:crypto';
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
} from '@simplewebauthn/server';
import { isIP } from 'node:net';
import type { Principal } from '../../access/principal.js';
import type { Auditor, AuditEvent } from '../../audit/events.js';
import type { Store } from '../../db/database.js';
import { HttpProblem, conflict, notFound } from '../../http/problem.js';
import type { IdentityService, RequestContext, TokenPair } from '../service.js';
import { STEP_UP_SECONDS } from '../service.js';
import { findUserById, setSessionMfa } from '../store.js';
import { asAuthentication, asRegistration, type Assertion, type CredentialJson } from './credential.js';
import * as db from './store.js';

/** The WebAuthn library, loaded at the first ceremony rather than at every start (it is slow to load). */
const webauthn = () => import('@simplewebauthn/server');

/** A ceremony must be finished this soon after its options were handed out. */
export const CHALLENGE_SECONDS = 5 * 60;

type Purpose = db.ChallengeRow['purpose'];

export interface Attempt<T> {
  attempt_id: string;
  options: T;
}

export interface PasskeyView {
  id: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
  device_type: 'singleDevice' | 'multiDevice';
  backed_up: boolean;
}

export interface PasskeyDeps {
  store: Store;
  audit: Auditor;
  identity: IdentityService;
  /** CELFORGE_PUBLIC_URL: its origin is the only one accepted, its host name is the RP ID */
  publicUrl: string;
  /** drops the user's cached API-key rows: an admin scope holds only while the owner has a second factor */
  apiKeys?: { evictUserKeys(userId: string): Promise<void> };
}

const iso = (ms = Date.now()) => new Date(ms).toISOString();
const userHandle = (userId: string) => Buffer.from(userId, 'utf8').toString('base64url');

export const view = (row: db.PasskeyRow): PasskeyView => ({
  id: row.id,
  name: row.name,
  created_at: row.created_at,
  last_used_at: row.last_used_at,
  device_type: row.device_type,
  backed_up: row.backed_up === 1,
});

const attemptOver = () =>
  new HttpProblem(400, 'passkey-attempt-expired', 'This passkey request has expired or was already used; start again.');

/**
 * Passkeys (WebAuthn): registration, passwordless sign-in, second factor after a password and
 * step-up. Every challenge is stored (any instance can finish a ceremony another began), bound to
 * its purpose and its user or session, used once and valid for CHALLENGE_SECONDS.
 */
export class PasskeyService {
  readonly origin: string;
  /** null when the public URL is an IP address: WebAuthn needs a host name */
  readonly rpId: string | null;

  constructor(private readonly deps: PasskeyDeps) {
    const url = new URL(deps.publicUrl);
    this.origin = url.origin;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    this.rpId = isIP(host) === 0 ? host : null;
  }

  private get db() {
    return this.deps.store.db;
  }

  private audit(event: AuditEvent, ctx?: RequestContext): void {
    this.deps.audit.record({ ip: ctx?.ip ?? null, requestId: ctx?.requestId ?? null, ...event });
  }

  private requireRpId(): string {
    if (this.rpId === null) {
      throw new HttpProblem(409, 'passkeys-unavailable', 'Passkeys need CELFORGE_PUBLIC_URL to name a host (https://…, or http://localhost), not an IP address.');
    }
    return this.rpId;
  }

  /** Whether the user has a passkey (it counts as a second factor). */
  async has(userId: string): Promise<boolean> {
    return (await db.countPasskeys(this.db, userId)) > 0;
  }

  list(userId: string): Promise<db.PasskeyRow[]> {
    return db.listPasskeys(this.db, userId);
  }

  private async newChallenge(purpose: Purpose, binding: { userId?: string; sessionId?: string | null }): Promise<{ id: string; challenge: string }> {
    const now = Date.now();
    const row: db.ChallengeRow = {
      id: randomBytes(24).toString('base64url'),
      purpose,
      challenge: randomBytes(32).toString('base64url'),
      user_id: binding.userId ?? null,
      session_id: binding.sessionId ?? null,
      created_at: iso(now),
      expires_at: iso(now + CHALLENGE_SECONDS * 1000),
    };
    await db.insertChallenge(this.db, row);
    return { id: row.id, challenge: row.challenge };
  }

  /** The stored challenge of an attempt, taken (so it works once), when it fits the purpose and binding. */
  private async takeChallenge(attemptId: string, purposes: Purpose[], binding: { userId?: string; sessionId?: string | null } = {}): Promise<db.ChallengeRow> {
    const row = await db.takeChallenge(this.db, attemptId);
    if (
      !row ||
      !purposes.includes(row.purpose) ||
      Date.parse(row.expires_at) <= Date.now() ||
      (binding.userId !== undefined && row.user_id !== binding.userId) ||
      (binding.sessionId !== undefined && row.session_id !== binding.sessionId)
    ) {
      throw attemptOver();
    }
    return row;
  }

  // ---- registration

  /** Options for a new passkey; the password again, as for enabling TOTP: a stolen session alone cannot add a way in. */
  async registrationOptions(principal: Principal, password: string, ctx: RequestContext): Promise<Attempt<PublicKeyCredentialCreationOptionsJSON>> {
    const rpID = this.requireRpId();
    if (!principal.sessionId) throw new HttpProblem(400, 'no-session', 'Passkeys are added from a signed-in session.');
    const user = await findUserById(this.db, principal.userId);
    if (!user) throw notFound();
    await this.deps.identity.confirmPassword(user, password, 'auth.passkey.register', ctx);
    const existing = await db.listPasskeys(this.db, user.id);
    const { id, challenge } = await this.newChallenge('register', { userId: user.id, sessionId: principal.sessionId });
    const options = await (await webauthn()).generateRegistrationOptions({
      rpName: 'Celforge',
      rpID,
      userName: user.email,
      userDisplayName: user.email,
      userID: Buffer.from(user.id, 'utf8'),
      challenge: Buffer.from(challenge, 'base64url'),
      timeout: CHALLENGE_SECONDS * 1000,
      attestationType: 'none',
      excludeCredentials: existing.map((p) => ({ id: p.credential_id, transports: transportsOf(p) })),
      // discoverable, so it can sign in without an e-mail; verified, so it is a factor of its own
      authenticatorSelection: { residentKey: 'required', requireResidentKey: true, userVerification: 'required' },
      supportedAlgorithmIDs: [-7, -8, -257],
    });
    return { attempt_id: id, options };
  }

  async register(principal: Principal, input: { attempt_id: string; name?: string; response: CredentialJson }, ctx: RequestContext): Promise<PasskeyView> {
    const rpID = this.requireRpId();
    const row = await this.takeChallenge(input.attempt_id, ['register'], { userId: principal.userId, sessionId: principal.sessionId });
    let info;
    try {
      const result = await (await webauthn()).verifyRegistrationResponse({
        response: asRegistration(input.response),
        expectedChallenge: row.challenge,
        expectedOrigin: this.origin,
        expectedRPID: rpID,
        requireUserVerification: true,
        supportedAlgorithmIDs: [-7, -8, -257],
      });
      if (!result.verified) throw new Error('not verified');
      info = result.registrationInfo;
    } catch (error) {
      this.audit({ action: 'auth.passkey.register', outcome: 'failure', actorId: principal.userId, detail: { reason: reasonOf(error) } }, ctx);
      throw new HttpProblem(403, 'passkey-not-accepted', 'The passkey could not be verified; try again.');
    }
    const now = iso();
    const passkey: db.PasskeyRow = {
      id: randomUUID(),
      user_id: principal.userId,
      credential_id: info.credential.id,
      public_key: Buffer.from(info.credential.publicKey).toString('base64url'),
      counter: info.credential.counter,
      transports: info.credential.transports?.length ? JSON.stringify(info.credential.transports) : null,
      device_type: info.credentialDeviceType,
      backed_up: info.credentialBackedUp ? 1 : 0,
      name: cleanName(input.name) ?? defaultName(info.credentialDeviceType),
      created_at: now,
      last_used_at: null,
    };
    try {
      await db.insertPasskey(this.db, passkey);
    } catch {
      throw conflict('This passkey is already registered.');
    }
    await this.deps.apiKeys?.evictUserKeys(principal.userId);
    this.audit(
      { action: 'auth.passkey.register', outcome: 'success', actorId: principal.userId, target: passkey.id, detail: { device_type: passkey.device_type, backed_up: passkey.backed_up === 1 } },
      ctx,
    );
    return view(passkey);
  }

  async rename(principal: Principal, id: string, name: string, ctx: RequestContext): Promise<PasskeyView> {
    const clean = cleanName(name);
    if (!clean) throw new HttpProblem(422, 'invalid-name', 'Give the passkey a name.');
    if (!(await db.renamePasskey(this.db, principal.userId, id, clean))) throw notFound('No such passkey.');
    this.audit({ action: 'auth.passkey.rename', outcome: 'success', actorId: principal.userId, target: id }, ctx);
    return view((await db.listPasskeys(this.db, principal.userId)).find((p) => p.id === id)!);
  }

  /** An admin's last second factor stays: admin work needs one (remove it after enrolling TOTP or another passkey). */
  async remove(principal: Principal, id: string, ctx: RequestContext): Promise<void> {
    const user = await findUserById(this.db, principal.userId);
    if (!user) throw notFound();
    const mine = (await db.listPasskeys(this.db, user.id)).find((p) => p.id === id);
    if (!mine) throw notFound('No such passkey.');
    const guarded = user.role === 'admin' && user.totp_enabled !== 1;
    const removed = await db.deletePasskey(this.db, user.id, id, { keepOne: guarded });
    if (!removed && !guarded) throw notFound('No such passkey.');
    if (!removed) {
      this.audit({ action: 'auth.passkey.remove', outcome: 'denied', actorId: user.id, target: id, detail: { reason: 'last-second-factor' } }, ctx);
      throw new HttpProblem(409, 'last-second-factor', 'This is your only second factor, and administrators need one: add another passkey or turn on TOTP first.');
    }
    await this.deps.apiKeys?.evictUserKeys(user.id);
    this.audit({ action: 'auth.passkey.remove', outcome: 'success', actorId: user.id, target: id }, ctx);
  }

  /** Admin: removes all of a user's passkeys (a lost device); they sign in with the password (and TOTP) again. */
  async adminRemoveAll(userId: string, actor: { id: string; ctx?: RequestContext }): Promise<number> {
    if (userId === actor.id) throw conflict('Reset your own passkeys through another administrator.');
    const user = await findUserById(this.db, userId);
    if (!user) throw notFound('No such user.');
    const removed = await db.deleteUserPasskeys(this.db, userId);
    await this.deps.apiKeys?.evictUserKeys(userId);
    this.audit({ action: 'admin.user.passkeys.reset', outcome: 'success', actorId: actor.id, target: userId, detail: { removed } }, actor.ctx);
    return removed;
  }

  // ---- sign-in, second factor, step-up

  /** Options for a passwordless sign-in: no user named; the authenticator offers its discoverable passkeys. */
  async signInOptions(): Promise<Attempt<PublicKeyCredentialRequestOptionsJSON>> {
    const rpID = this.requireRpId();
    const { id, challenge } = await this.newChallenge('signin', {});
    const options = await (await webauthn()).generateAuthenticationOptions({ rpID, challenge: Buffer.from(challenge, 'base64url'), timeout: CHALLENGE_SECONDS * 1000, userVerification: 'required' });
    return { attempt_id: id, options };
  }

  /** Options for the second factor, after the password was right: only that user's passkeys. */
  async secondFactorOptions(userId: string): Promise<Attempt<PublicKeyCredentialRequestOptionsJSON>> {
    return this.userAttempt('second-factor', userId, null, 'preferred');
  }

  async stepUpOptions(principal: Principal): Promise<Attempt<PublicKeyCredentialRequestOptionsJSON>> {
    if (!principal.sessionId) throw new HttpProblem(400, 'no-session', 'Step-up is for session tokens.');
    if (!(await this.has(principal.userId))) throw conflict('You have no passkey; add one first.');
    return this.userAttempt('step-up', principal.userId, principal.sessionId, 'required');
  }

  private async userAttempt(purpose: Purpose, userId: string, sessionId: string | null, userVerification: 'required' | 'preferred') {
    const rpID = this.requireRpId();
    const passkeys = await db.listPasskeys(this.db, userId);
    const { id, challenge } = await this.newChallenge(purpose, { userId, sessionId });
    const options = await (await webauthn()).generateAuthenticationOptions({
      rpID,
      challenge: Buffer.from(challenge, 'base64url'),
      timeout: CHALLENGE_SECONDS * 1000,
      userVerification,
      allowCredentials: passkeys.map((p) => ({ id: p.credential_id, transports: transportsOf(p) })),
    });
    return { attempt_id: id, options };
  }

  /**
   * Finishes a passwordless sign-in or the second factor of a password sign-in: an ordinary
   * session (the same tokens, session list, revocation and audit as a password sign-in).
   */
  async signIn(input: Assertion, ctx: RequestContext): Promise<TokenPair> {
    const row = await this.takeChallenge(input.attempt_id, ['signin', 'second-factor']);
    const refused = (reason: string, userId?: string) => {
      this.audit({ action: 'auth.login', outcome: 'failure', actorId: userId ?? null, detail: { reason, method: 'passkey' } }, ctx);
      return new HttpProblem(401, 'passkey-not-accepted', 'That passkey was not accepted.', { headers: { 'www-authenticate': 'Bearer realm="celforge"' } });
    };
    const passkey = await db.findPasskeyByCredentialId(this.db, String(input.response?.id ?? ''));
    if (!passkey) throw refused('unknown-passkey', row.user_id ?? undefined);
    if (row.purpose === 'second-factor' && passkey.user_id !== row.user_id) throw refused('other-user', row.user_id ?? undefined);
    if (row.purpose === 'signin' && input.response.response?.userHandle !== undefined && input.response.response.userHandle !== userHandle(passkey.user_id)) {
      throw refused('user-handle', passkey.user_id);
    }
    const user = await findUserById(this.db, passkey.user_id);
    if (!user || user.disabled === 1) throw refused(user ? 'disabled' : 'unknown', passkey.user_id);
    const ok = await this.verifyUse(passkey, row, asAuthentication(input.response), row.purpose === 'signin', ctx);
    if (!ok) throw refused('passkey', user.id);
    return this.deps.identity.completeSignIn(user, ctx, 'passkey');
  }

  async stepUp(principal: Principal, input: Assertion, ctx: RequestContext): Promise<{ mfa_at: string; valid_until: string }> {
    if (!principal.sessionId) throw new HttpProblem(400, 'no-session', 'Step-up is for session tokens.');
    const row = await this.takeChallenge(input.attempt_id, ['step-up'], { userId: principal.userId, sessionId: principal.sessionId });
    const passkey = await db.findPasskeyByCredentialId(this.db, String(input.response?.id ?? ''));
    if (!passkey || passkey.user_id !== principal.userId || !(await this.verifyUse(passkey, row, asAuthentication(input.response), true, ctx))) {
      this.audit({ action: 'auth.2fa.step-up', outcome: 'failure', actorId: principal.userId, detail: { method: 'passkey' } }, ctx);
      throw new HttpProblem(403, 'passkey-not-accepted', 'That passkey was not accepted.');
    }
    const now = Date.now();
    await setSessionMfa(this.db, principal.sessionId, iso(now), 'passkey');
    this.audit({ action: 'auth.2fa.step-up', outcome: 'success', actorId: principal.userId, target: principal.sessionId, detail: { method: 'passkey' } }, ctx);
    return { mfa_at: iso(now), valid_until: iso(now + STEP_UP_SECONDS * 1000) };
  }

  /**
   * Checks an assertion against the stored challenge and the passkey, then records the use. A
   * valid signature with a counter that did not move forward means a cloned authenticator (or a
   * replay): refused, and audited as such.
   */
  private async verifyUse(passkey: db.PasskeyRow, row: db.ChallengeRow, response: AuthenticationResponseJSON, requireUserVerification: boolean, ctx: RequestContext): Promise<boolean> {
    const rpID = this.requireRpId();
    const stored = Number(passkey.counter);
    let info;
    try {
      const result = await (await webauthn()).verifyAuthenticationResponse({
        response,
        expectedChallenge: row.challenge,
        expectedOrigin: this.origin,
        expectedRPID: rpID,
        // the counter is compared below, after the signature, so a regression can be told apart
        credential: { id: passkey.credential_id, publicKey: Buffer.from(passkey.public_key, 'base64url'), counter: 0, transports: transportsOf(passkey) },
        requireUserVerification,
      });
      if (!result.verified) throw new Error('not verified');
      info = result.authenticationInfo;
    } catch (error) {
      this.audit({ action: 'auth.passkey.use', outcome: 'failure', actorId: passkey.user_id, target: passkey.id, detail: { purpose: row.purpose, reason: reasonOf(error) } }, ctx);
      return false;
    }
    const counter = info.newCounter;
    const counts = counter > 0 || stored > 0;
    if ((counts && counter <= stored) || !(await db.recordPasskeyUse(this.db, passkey.id, { previous: stored, counter, backedUp: info.credentialBackedUp, at: iso() }))) {
      this.audit(
        { action: 'auth.passkey.counter', outcome: 'denied', actorId: passkey.user_id, target: passkey.id, detail: { purpose: row.purpose, stored, presented: counter } },
        ctx,
      );
      return false;
    }
    this.audit({ action: 'auth.passkey.use', outcome: 'success', actorId: passkey.user_id, target: passkey.id, detail: { purpose: row.purpose, user_verified: info.userVerified } }, ctx);
    return true;
  }
}

function transportsOf(passkey: db.PasskeyRow): AuthenticatorTransportFuture[] | undefined {
  if (!passkey.transports) return undefined;
  try {
    return JSON.parse(passkey.transports) as AuthenticatorTransportFuture[];
  } catch {
    return undefined;
  }
}

type AuthenticatorTransportFuture = 'ble' | 'cable' | 'hybrid' | 'internal' | 'nfc' | 'smart-card' | 'usb';

function cleanName(name: string | undefined): string | null {
  const clean = name?.replace(/\p{Cc}/gu, '').trim().slice(0, 64);
  return clean ? clean : null;
}

function defaultName(deviceType: string): string {
  return deviceType === 'multiDevice' ? 'Synced passkey' : 'Passkey';
}

/** A short, safe reason for the audit trail (library messages carry no secrets, but stay bounded). */
function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message.slice(0, 160) : 'invalid';
}

