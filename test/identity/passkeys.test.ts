import { parseSetCookie } from 'cookie';
import { expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { registerAndLogin, TEST_PASSWORD } from '../support/users.js';
import { SoftAuthenticator } from '../support/webauthn.js';

const PUBLIC_URL = 'http://localhost:5180';

describeEachDialect('identity: passkeys (WebAuthn)', (dialect) => {
  const t = useTestApp(dialect, { publicUrl: PUBLIC_URL });
  let ip = 0;
  const db = () => t.app.services.store.db;
  const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, authorization?: string, payload?: object, headers: Record<string, string> = {}) =>
    t.app.inject({ method, url, headers: { ...headers, ...(authorization ? { authorization } : {}) }, payload, remoteAddress: `10.30.${dialect === 'sqlite' ? 1 : 2}.${++ip % 250}` });

  async function audit(action: string) {
    await t.app.services.audit.flush();
    return db().selectFrom('audit_log').selectAll().where('action', '=', action).orderBy('seq').execute();
  }

  /** Adds a passkey to the user's account through the API, with the software authenticator. */
  async function addPasskey(authorization: string, authenticator: SoftAuthenticator, name?: string) {
    const start = await call('POST', '/api/auth/passkeys/registration/options', authorization, { password: TEST_PASSWORD });
    expect(start.statusCode, start.body).toBe(200);
    const { attempt_id, options } = start.json();
    const response = authenticator.create(options);
    const finish = await call('POST', '/api/auth/passkeys/registration', authorization, { attempt_id, name, response });
    expect(finish.statusCode, finish.body).toBe(201);
    return finish.json() as { id: string; name: string };
  }

  async function withPasskey(role: 'user' | 'admin' = 'user', authenticator = new SoftAuthenticator(PUBLIC_URL)) {
    const user = await registerAndLogin(t.app, { role });
    const passkey = await addPasskey(user.authorization.authorization, authenticator, 'Laptop');
    return { ...user, authenticator, passkey };
  }

  const signInOptions = async () => {
    const response = await call('POST', '/api/auth/passkeys/signin/options');
    expect(response.statusCode).toBe(200);
    return response.json() as { attempt_id: string; options: Record<string, unknown> };
  };

  it('registers a passkey: options bound to the user, the credential stored with counter and backup flags, audited', async () => {
    const user = await registerAndLogin(t.app);
    const wrong = await call('POST', '/api/auth/passkeys/registration/options', user.authorization.authorization, { password: 'not the password' });
    expect(wrong.json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:wrong-password' });

    const authenticator = new SoftAuthenticator(PUBLIC_URL);
    const start = await call('POST', '/api/auth/passkeys/registration/options', user.authorization.authorization, { password: TEST_PASSWORD });
    const { attempt_id, options } = start.json();
    expect(options).toMatchObject({
      rp: { id: 'localhost', name: 'Celforge' },
      user: { name: user.email, id: Buffer.from(user.userId).toString('base64url') },
      attestation: 'none',
      authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
      timeout: 300_000,
    });
    const response = authenticator.create(options, { flags: { backupEligible: true, backedUp: true } });
    const created = await call('POST', '/api/auth/passkeys/registration', user.authorization.authorization, { attempt_id, name: ' Phone\u0007 ', response });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json()).toMatchObject({ name: 'Phone', device_type: 'multiDevice', backed_up: true, last_used_at: null });

    const row = await db().selectFrom('passkeys').selectAll().where('user_id', '=', user.userId).executeTakeFirstOrThrow();
    expect(row).toMatchObject({ credential_id: response.id, device_type: 'multiDevice', backed_up: 1, transports: '["internal"]' });
    expect(Number(row.counter)).toBe(1);

    const list = await call('GET', '/api/auth/passkeys', user.authorization.authorization);
    expect(list.json().items).toEqual([created.json()]);
    // the same authenticator is excluded next time
    const again = await call('POST', '/api/auth/passkeys/registration/options', user.authorization.authorization, { password: TEST_PASSWORD });
    expect(again.json().options.excludeCredentials).toEqual([{ id: response.id, type: 'public-key', transports: ['internal'] }]);

    const events = await audit('auth.passkey.register');
    expect(events.filter((e) => e.actor_id === user.userId).map((e) => [e.outcome, e.target])).toEqual([
      ['failure', null],
      ['success', created.json().id],
    ]);
  });

  it('refuses a registration without user verification, for another origin, or with a used attempt', async () => {
    const user = await registerAndLogin(t.app);
    const auth = user.authorization.authorization;
    const authenticator = new SoftAuthenticator(PUBLIC_URL);
    const start = async () => (await call('POST', '/api/auth/passkeys/registration/options', auth, { password: TEST_PASSWORD })).json();

    let attempt = await start();
    let refused = await call('POST', '/api/auth/passkeys/registration', auth, { attempt_id: attempt.attempt_id, response: authenticator.create(attempt.options, { flags: { userVerified: false } }) });
    expect(refused.json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:passkey-not-accepted' });

    attempt = await start();
    refused = await call('POST', '/api/auth/passkeys/registration', auth, { attempt_id: attempt.attempt_id, response: authenticator.create(attempt.options, { origin: 'http://localhost.evil.test:5180' }) });
    expect(refused.json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:passkey-not-accepted' });
    // that attempt is spent even though it failed
    refused = await call('POST', '/api/auth/passkeys/registration', auth, { attempt_id: attempt.attempt_id, response: authenticator.create(attempt.options) });
    expect(refused.json()).toMatchObject({ status: 400, type: 'urn:celforge:problem:passkey-attempt-expired' });

    // an attempt belongs to the session that started it
    attempt = await start();
    const other = await registerAndLogin(t.app);
    refused = await call('POST', '/api/auth/passkeys/registration', other.authorization.authorization, { attempt_id: attempt.attempt_id, response: authenticator.create(attempt.options) });
    expect(refused.json()).toMatchObject({ status: 400, type: 'urn:celforge:problem:passkey-attempt-expired' });

    // malformed responses are problems, not 500s
    attempt = await start();
    for (const response of [{}, { id: 'x', rawId: 'x', type: 'public-key', response: { clientDataJSON: 'e30' }, clientExtensionResults: {} }]) {
      const bad = await call('POST', '/api/auth/passkeys/registration', auth, { attempt_id: attempt.attempt_id, response });
      expect([400, 403]).toContain(bad.statusCode);
      expect(bad.headers['content-type']).toContain('application/problem+json');
    }
    expect((await call('GET', '/api/auth/passkeys', auth)).json().items).toEqual([]);
  });

  it('signs in without a password: an ordinary session (same tokens, listed, refreshable, revocable), audited', async () => {
    const user = await withPasskey();
    const { attempt_id, options } = await signInOptions();
    expect(options).toMatchObject({ rpId: 'localhost', userVerification: 'required' });
    expect(options.allowCredentials ?? []).toEqual([]);
    const signedIn = await call('POST', '/api/auth/passkeys/signin', undefined, { attempt_id, response: user.authenticator.get(options) });
    expect(signedIn.statusCode, signedIn.body).toBe(200);
    const pair = signedIn.json();
    expect(pair).toMatchObject({ token_type: 'Bearer', session_id: expect.any(String), refresh_token: expect.any(String) });

    const me = await call('GET', '/api/auth/me', `Bearer ${pair.access_token}`);
    expect(me.json()).toMatchObject({ id: user.userId, email: user.email });
    const sessions = (await call('GET', '/api/auth/sessions', `Bearer ${pair.access_token}`)).json().items as { id: string; current: boolean; mfa_at: string | null }[];
    expect(sessions.find((s) => s.current)).toMatchObject({ id: pair.session_id, mfa_at: expect.any(String) });
    const refreshed = await call('POST', '/api/auth/refresh', undefined, { refresh_token: pair.refresh_token });
    expect(refreshed.statusCode).toBe(200);

    const row = await db().selectFrom('passkeys').selectAll().where('id', '=', user.passkey.id).executeTakeFirstOrThrow();
    expect(Number(row.counter)).toBe(2);
    expect(row.last_used_at).not.toBeNull();
    const list = (await call('GET', '/api/auth/passkeys', `Bearer ${pair.access_token}`)).json().items;
    expect(list[0].last_used_at).toBe(row.last_used_at);

    expect(await call('DELETE', `/api/auth/sessions/${pair.session_id}`, `Bearer ${refreshed.json().access_token}`)).toMatchObject({ statusCode: 204 });
    expect((await call('GET', '/api/auth/me', `Bearer ${refreshed.json().access_token}`)).statusCode).toBe(401);

    const logins = (await audit('auth.login')).filter((e) => e.actor_id === user.userId && e.outcome === 'success');
    expect(JSON.parse(logins.at(-1)!.detail!)).toEqual({ mfa: true, method: 'passkey' });
    const uses = (await audit('auth.passkey.use')).filter((e) => e.target === user.passkey.id);
    expect(uses.map((e) => [e.outcome, JSON.parse(e.detail!).purpose])).toEqual([['success', 'signin']]);
  });

  it('signs the studio in with the refresh cookie, from the studio origin only', async () => {
    const user = await withPasskey();
    const studio = { 'x-celforge-studio': '1', origin: PUBLIC_URL };
    let { attempt_id, options } = await signInOptions();
    const elsewhere = await call('POST', '/api/auth/browser/passkeys/signin', undefined, { attempt_id, response: user.authenticator.get(options) }, { ...studio, origin: 'http://evil.test' });
    expect(elsewhere.statusCode).toBe(403);
    ({ attempt_id, options } = await signInOptions());
    const signedIn = await call('POST', '/api/auth/browser/passkeys/signin', undefined, { attempt_id, response: user.authenticator.get(options) }, studio);
    expect(signedIn.statusCode, signedIn.body).toBe(200);
    expect(signedIn.json()).not.toHaveProperty('refresh_token');
    const cookie = parseSetCookie(String(signedIn.headers['set-cookie']));
    expect(cookie).toMatchObject({ name: 'celforge_refresh', path: '/api/auth', httpOnly: true, sameSite: 'strict', value: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) });
    const refreshed = await call('POST', '/api/auth/browser/refresh', undefined, undefined, { ...studio, cookie: `celforge_refresh=${cookie.value}` });
    expect(refreshed.statusCode).toBe(200);
    expect(refreshed.json().session_id).toBe(signedIn.json().session_id);
  });

  it('refuses a replayed, expired or foreign attempt, and a wrong origin or RP ID, without a session', async () => {
    const user = await withPasskey();
    const sessionsBefore = await db().selectFrom('sessions').select('id').where('user_id', '=', user.userId).execute();

    // replay: the same answer twice
    let attempt = await signInOptions();
    const response = user.authenticator.get(attempt.options);
    expect((await call('POST', '/api/auth/passkeys/signin', undefined, { attempt_id: attempt.attempt_id, response })).statusCode).toBe(200);
    const replay = await call('POST', '/api/auth/passkeys/signin', undefined, { attempt_id: attempt.attempt_id, response });
    expect(replay.json()).toMatchObject({ status: 400, type: 'urn:celforge:problem:passkey-attempt-expired' });

    // expired: older than five minutes
    attempt = await signInOptions();
    await db().updateTable('webauthn_challenges').set({ expires_at: new Date(Date.now() - 1000).toISOString() }).where('id', '=', attempt.attempt_id).execute();
    const expired = await call('POST', '/api/auth/passkeys/signin', undefined, { attempt_id: attempt.attempt_id, response: user.authenticator.get(attempt.options) });
    expect(expired.json()).toMatchObject({ status: 400, type: 'urn:celforge:problem:passkey-attempt-expired' });

    // an answer to another attempt's challenge
    const first = await signInOptions();
    const second = await signInOptions();
    const crossed = await call('POST', '/api/auth/passkeys/signin', undefined, { attempt_id: second.attempt_id, response: user.authenticator.get(first.options) });
    expect(crossed.json()).toMatchObject({ status: 401, type: 'urn:celforge:problem:passkey-not-accepted' });

    for (const ceremony of [{ origin: 'http://localhost:9999' }, { origin: 'https://celforge.example' }, { rpId: 'example.com' }, { flags: { userVerified: false } }]) {
      attempt = await signInOptions();
      const refused = await call('POST', '/api/auth/passkeys/signin', undefined, { attempt_id: attempt.attempt_id, response: user.authenticator.get(attempt.options, ceremony) });
      expect(refused.json(), JSON.stringify(ceremony)).toMatchObject({ status: 401, type: 'urn:celforge:problem:passkey-not-accepted' });
    }
    const sessionsAfter = await db().selectFrom('sessions').select('id').where('user_id', '=', user.userId).execute();
    expect(sessionsAfter).toHaveLength(sessionsBefore.length + 1);
    const failures = (await audit('auth.passkey.use')).filter((e) => e.target === user.passkey.id && e.outcome === 'failure');
    expect(failures.length).toBeGreaterThanOrEqual(5);
  });

  it('finishes on another instance a sign-in this one began: challenges live in the store, and work once across instances', async () => {
    const user = await withPasskey();
    const other = await buildApp(t.config, { worker: false });
    try {
      const { attempt_id, options } = await signInOptions();
      const payload = { attempt_id, response: user.authenticator.get(options) };
      const done = await other.inject({ method: 'POST', url: '/api/auth/passkeys/signin', payload, remoteAddress: '10.31.0.1' });
      expect(done.statusCode, done.body).toBe(200);
      expect((await call('GET', '/api/auth/me', `Bearer ${done.json().access_token}`)).json()).toMatchObject({ id: user.userId });
      const replay = await call('POST', '/api/auth/passkeys/signin', undefined, payload);
      expect(replay.json()).toMatchObject({ status: 400, type: 'urn:celforge:problem:passkey-attempt-expired' });
    } finally {
      await other.close();
    }
  });

  it('refuses a signature counter that goes backwards, and audits it', async () => {
    const user = await withPasskey();
    let attempt = await signInOptions();
    expect((await call('POST', '/api/auth/passkeys/signin', undefined, { attempt_id: attempt.attempt_id, response: user.authenticator.get(attempt.options, { counter: 10 }) })).statusCode).toBe(200);
    for (const counter of [9, 10]) {
      attempt = await signInOptions();
      const cloned = await call('POST', '/api/auth/passkeys/signin', undefined, { attempt_id: attempt.attempt_id, response: user.authenticator.get(attempt.options, { counter }) });
      expect(cloned.json()).toMatchObject({ status: 401, type: 'urn:celforge:problem:passkey-not-accepted' });
    }
    const row = await db().selectFrom('passkeys').select('counter').where('id', '=', user.passkey.id).executeTakeFirstOrThrow();
    expect(Number(row.counter)).toBe(10);
    const events = (await audit('auth.passkey.counter')).filter((e) => e.target === user.passkey.id);
    expect(events.map((e) => [e.outcome, JSON.parse(e.detail!)])).toEqual([
      ['denied', { purpose: 'signin', stored: 10, presented: 9 }],
      ['denied', { purpose: 'signin', stored: 10, presented: 10 }],
    ]);
    attempt = await signInOptions();
    expect((await call('POST', '/api/auth/passkeys/signin', undefined, { attempt_id: attempt.attempt_id, response: user.authenticator.get(attempt.options, { counter: 11 }) })).statusCode).toBe(200);
  });

  it('accepts authenticators without a counter (always 0), as synced passkeys are', async () => {
    const user = await withPasskey('user', new SoftAuthenticator(PUBLIC_URL, false));
    for (let i = 0; i < 2; i++) {
      const attempt = await signInOptions();
      expect((await call('POST', '/api/auth/passkeys/signin', undefined, { attempt_id: attempt.attempt_id, response: user.authenticator.get(attempt.options) })).statusCode).toBe(200);
    }
  });

  it('serves as the second factor after the password, with a challenge bound to that user', async () => {
    const user = await withPasskey();
    const login = () => call('POST', '/api/auth/login', undefined, { email: user.email, password: TEST_PASSWORD });
    const asked = await login();
    expect(asked.statusCode).toBe(401);
    const problem = asked.json();
    expect(problem).toMatchObject({ type: 'urn:celforge:problem:passkey-required', passkey: { attempt_id: expect.any(String), options: { rpId: 'localhost' } } });
    expect(problem.passkey.options.allowCredentials).toEqual([{ id: user.authenticator.credentials[0]!.id.toString('base64url'), type: 'public-key', transports: ['internal'] }]);
    // a wrong password gives no challenge
    const wrong = await call('POST', '/api/auth/login', undefined, { email: user.email, password: 'wrong password here' });
    expect(wrong.json()).not.toHaveProperty('passkey');

    // another user's passkey does not finish this user's sign-in
    const other = await withPasskey();
    const foreign = await call('POST', '/api/auth/passkeys/signin', undefined, { attempt_id: problem.passkey.attempt_id, response: other.authenticator.get({ ...problem.passkey.options, allowCredentials: [] }) });
    expect(foreign.json()).toMatchObject({ status: 401, type: 'urn:celforge:problem:passkey-not-accepted' });

    const again = (await login()).json();
    const done = await call('POST', '/api/auth/passkeys/signin', undefined, { attempt_id: again.passkey.attempt_id, response: user.authenticator.get(again.passkey.options) });
    expect(done.statusCode, done.body).toBe(200);
    const session = await db().selectFrom('sessions').select('mfa_at').where('id', '=', done.json().session_id).executeTakeFirstOrThrow();
    expect(session.mfa_at).not.toBeNull();
    const uses = (await audit('auth.passkey.use')).filter((e) => e.target === user.passkey.id && e.outcome === 'success');
    expect(JSON.parse(uses.at(-1)!.detail!).purpose).toBe('second-factor');
  });

  it('steps an admin session up for admin work (user verification required), and counts as the admin second factor', async () => {
    const admin = await registerAndLogin(t.app, { role: 'admin' });
    const auth = admin.authorization.authorization;
    const users = () => call('GET', '/api/auth/users', auth);
    expect((await users()).json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:enrol-2fa' });
    const authenticator = new SoftAuthenticator(PUBLIC_URL);
    await addPasskey(auth, authenticator);
    expect((await users()).json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:step-up-required' });

    let start = await call('POST', '/api/auth/passkeys/step-up/options', auth);
    expect(start.json().options).toMatchObject({ userVerification: 'required', allowCredentials: [{ id: authenticator.credentials[0]!.id.toString('base64url') }] });
    const unverified = await call('POST', '/api/auth/passkeys/step-up', auth, { attempt_id: start.json().attempt_id, response: authenticator.get(start.json().options, { flags: { userVerified: false } }) });
    expect(unverified.json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:passkey-not-accepted' });
    expect((await users()).statusCode).toBe(403);

    // a step-up attempt belongs to the session that asked for it
    start = await call('POST', '/api/auth/passkeys/step-up/options', auth);
    const otherSession = await call('POST', '/api/auth/passkeys/signin', undefined, await (async () => {
      const a = await signInOptions();
      return { attempt_id: a.attempt_id, response: authenticator.get(a.options) };
    })());
    const stolen = await call('POST', '/api/auth/passkeys/step-up', `Bearer ${otherSession.json().access_token}`, { attempt_id: start.json().attempt_id, response: authenticator.get(start.json().options) });
    expect(stolen.json()).toMatchObject({ status: 400, type: 'urn:celforge:problem:passkey-attempt-expired' });

    start = await call('POST', '/api/auth/passkeys/step-up/options', auth);
    const stepped = await call('POST', '/api/auth/passkeys/step-up', auth, { attempt_id: start.json().attempt_id, response: authenticator.get(start.json().options) });
    expect(stepped.statusCode, stepped.body).toBe(200);
    expect(Date.parse(stepped.json().valid_until) - Date.parse(stepped.json().mfa_at)).toBe(15 * 60 * 1000);
    expect((await users()).statusCode).toBe(200);
    const events = (await audit('auth.2fa.step-up')).filter((e) => e.actor_id === admin.userId);
    expect(events.map((e) => [e.outcome, JSON.parse(e.detail!).method])).toEqual([
      ['failure', 'passkey'],
      ['success', 'passkey'],
    ]);
  });

  it("renames and removes passkeys, but not an admin's last second factor", async () => {
    const admin = await withPasskey('admin');
    const auth = admin.authorization.authorization;
    const renamed = await call('PATCH', `/api/auth/passkeys/${admin.passkey.id}`, auth, { name: 'Work laptop' });
    expect(renamed.json()).toMatchObject({ id: admin.passkey.id, name: 'Work laptop' });

    const refused = await call('DELETE', `/api/auth/passkeys/${admin.passkey.id}`, auth);
    expect(refused.json()).toMatchObject({ status: 409, type: 'urn:celforge:problem:last-second-factor' });
    expect((await call('GET', '/api/auth/passkeys', auth)).json().items).toHaveLength(1);

    const spare = await addPasskey(auth, new SoftAuthenticator(PUBLIC_URL), 'Spare key');
    expect((await call('DELETE', `/api/auth/passkeys/${admin.passkey.id}`, auth)).statusCode).toBe(204);
    expect((await call('GET', '/api/auth/passkeys', auth)).json().items.map((p: { name: string }) => p.name)).toEqual(['Spare key']);
    expect((await call('DELETE', `/api/auth/passkeys/${spare.id}`, auth)).statusCode).toBe(409);

    // someone else's passkey is not found, and stays
    const user = await withPasskey();
    expect((await call('DELETE', `/api/auth/passkeys/${user.passkey.id}`, auth)).statusCode).toBe(404);
    expect((await call('PATCH', `/api/auth/passkeys/${user.passkey.id}`, auth, { name: 'mine now' })).statusCode).toBe(404);
    expect((await call('DELETE', `/api/auth/passkeys/${user.passkey.id}`, user.authorization.authorization)).statusCode).toBe(204);

    const removals = (await audit('auth.passkey.remove')).filter((e) => e.actor_id === admin.userId);
    expect(removals.map((e) => [e.outcome, e.target])).toEqual([
      ['denied', admin.passkey.id],
      ['success', admin.passkey.id],
      ['denied', spare.id],
    ]);
  });

  it("lets an admin remove a user's passkeys (a lost device): the password signs in alone again", async () => {
    const user = await withPasskey();
    const admin = await signIn(t.app, { role: 'admin' });
    const reset = () => call('DELETE', `/api/auth/users/${user.userId}/passkeys`, admin.authorization.authorization);
    expect((await call('POST', '/api/auth/login', undefined, { email: user.email, password: TEST_PASSWORD })).statusCode).toBe(401);
    const notAdmin = await call('DELETE', `/api/auth/users/${user.userId}/passkeys`, user.authorization.authorization);
    expect(notAdmin.statusCode).toBe(403);
    expect((await reset()).json()).toEqual({ removed: 1 });
    expect((await call('POST', '/api/auth/login', undefined, { email: user.email, password: TEST_PASSWORD })).statusCode).toBe(200);
    const events = (await audit('admin.user.passkeys.reset')).filter((e) => e.target === user.userId);
    expect(events.map((e) => [e.actor_id, JSON.parse(e.detail!)])).toEqual([[admin.userId, { removed: 1 }]]);
  });

  it('needs a session: API keys and anonymous callers cannot manage passkeys', async () => {
    const anonymous = await call('GET', '/api/auth/passkeys');
    expect(anonymous.statusCode).toBe(401);
    expect((await call('POST', '/api/auth/passkeys/step-up/options')).statusCode).toBe(401);
  });
});

describeEachDialect('identity: passkeys need a host name', (dialect) => {
  const t = useTestApp(dialect, { publicUrl: 'http://127.0.0.1:5181' });

  it('says so when CELFORGE_PUBLIC_URL is an IP address', async () => {
    const response = await t.app.inject({ method: 'POST', url: '/api/auth/passkeys/signin/options' });
    expect(response.json()).toMatchObject({ status: 409, type: 'urn:celforge:problem:passkeys-unavailable' });
  });
});
