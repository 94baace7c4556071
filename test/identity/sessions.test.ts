import { createHash } from 'node:crypto';
import { DEFAULT_LIMITS, parseRateLimits } from '../../src/config/config.js';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { describe, expect, it } from 'vitest';
import { useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { registerAndLogin, signIn, TEST_PASSWORD } from '../support/users.js';

describeEachDialect('identity: login, refresh, sessions, revocation', (dialect) => {
  const t = useTestApp(dialect);
  const me = (authorization: string) => t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization } });
  const refresh = (refresh_token: string) => t.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token } });

  it('logs in with a token pair whose access token is exactly the documented shape (EdDSA, at+jwt, kid of the current key)', async () => {
    const user = await registerAndLogin(t.app);
    const header = decodeProtectedHeader(user.token);
    expect(header).toMatchObject({ alg: 'EdDSA', typ: 'at+jwt' });
    expect(header.kid).toBe(t.app.services.keys().current.kid);
    const claims = decodeJwt(user.token);
    expect(Object.keys(claims).sort()).toEqual(['aud', 'email', 'exp', 'iat', 'iss', 'jti', 'role', 'sid', 'sub'].sort());
    expect(claims).toMatchObject({ sub: user.userId, email: user.email, role: 'user', sid: user.sessionId, iss: 'urn:celforge:auth', aud: 'urn:celforge:api' });
    expect(claims.exp! - claims.iat!).toBe(900);
    expect(user.refreshToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const response = await me(`Bearer ${user.token}`);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ id: user.userId, email: user.email, role: 'user', totp_enabled: false });
    // only the hash of the refresh token is stored
    const rows = await t.app.services.store.db.selectFrom('refresh_tokens').select('token_hash').where('session_id', '=', user.sessionId).execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.token_hash).not.toContain(user.refreshToken);
    expect(rows[0]!.token_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('answers every wrong credential with the same generic 401', async () => {
    const user = await registerAndLogin(t.app);
    const attempt = (email: string, password: string) =>
      t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password }, remoteAddress: '10.9.0.1' });
    const wrongPassword = await attempt(user.email, 'not the password at all');
    const unknown = await attempt('nobody-here@example.test', 'not the password at all');
    expect(wrongPassword.statusCode).toBe(401);
    expect(unknown.statusCode).toBe(401);
    expect(unknown.json()).toEqual(wrongPassword.json());
    expect(wrongPassword.json()).toMatchObject({ type: 'urn:celforge:problem:invalid-credentials' });
    expect(wrongPassword.body).not.toMatch(/password is wrong|unknown|no such user/i);
  });

  it('refuses unknown fields, oversized and malformed bodies', async () => {
    const extra = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: 'a@b.c', password: 'x', role: 'admin' } });
    expect(extra.statusCode).toBe(400);
    const long = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: 'a@b.c', password: 'x'.repeat(257) } });
    expect(long.statusCode).toBe(400);
    const bad = await refresh("' or 1=1 --");
    expect(bad.statusCode).toBe(401);
  });

  it('rotates refresh tokens: the old one is dead, the new one works', async () => {
    const user = await registerAndLogin(t.app);
    const first = await refresh(user.refreshToken);
    expect(first.statusCode).toBe(200);
    const pair = first.json() as { access_token: string; refresh_token: string; session_id: string };
    expect(pair.session_id).toBe(user.sessionId);
    expect(pair.refresh_token).not.toBe(user.refreshToken);
    expect((await me(`Bearer ${pair.access_token}`)).statusCode).toBe(200);
    const second = await refresh(pair.refresh_token);
    expect(second.statusCode).toBe(200);
  });

  it('a reused refresh token ends the whole session, the new pair included', async () => {
    const user = await registerAndLogin(t.app);
    const successor = (await refresh(user.refreshToken)).json() as { refresh_token: string };
    // The successor is used, so the first token coming back cannot be a retry of a lost answer.
    const rotated = (await refresh(successor.refresh_token)).json() as { access_token: string; refresh_token: string };
    const reuse = await refresh(user.refreshToken);
    expect(reuse.statusCode).toBe(401);
    expect(reuse.json()).toMatchObject({ type: 'urn:celforge:problem:invalid-grant' });
    expect((await refresh(rotated.refresh_token)).statusCode).toBe(401);
    expect((await me(`Bearer ${rotated.access_token}`)).statusCode).toBe(401);
    expect((await me(`Bearer ${user.token}`)).statusCode).toBe(401);
    const session = await t.app.services.store.db.selectFrom('sessions').selectAll().where('id', '=', user.sessionId).executeTakeFirstOrThrow();
    expect(session.revoked_reason).toBe('refresh-reuse');
  });

  it('of simultaneous refreshes of one token, one rotates, at most one retries, and the session keeps one live token', async () => {
    const user = await registerAndLogin(t.app);
    const results = await Promise.all([refresh(user.refreshToken), refresh(user.refreshToken), refresh(user.refreshToken)]);
    const ok = results.filter((r) => r.statusCode === 200);
    // The first rotates; a later one is taken for a retry of that rotation (its answer lost) at most once.
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(ok.length).toBeLessThanOrEqual(2);
    for (const refused of results.filter((r) => r.statusCode !== 200)) expect(refused.json()).toMatchObject({ status: 401, type: 'urn:celforge:problem:invalid-grant' });
    const { db } = t.app.services.store;
    const live = await db.selectFrom('refresh_tokens').select('token_hash').where('session_id', '=', user.sessionId).where('used_at', 'is', null).execute();
    expect(live).toHaveLength(1);
    const holders = ok.filter((r) => createHash('sha256').update(r.json().refresh_token).digest('hex') === live[0]!.token_hash);
    expect(holders).toHaveLength(1);
    expect((await db.selectFrom('sessions').select('revoked_at').where('id', '=', user.sessionId).executeTakeFirstOrThrow()).revoked_at).toBeNull();
    expect((await refresh(holders[0]!.json().refresh_token)).statusCode).toBe(200);
  });

  it('logout takes effect on the very next request, though the token is cached', async () => {
    const user = await registerAndLogin(t.app);
    expect((await me(user.authorization.authorization)).statusCode).toBe(200);
    const out = await t.app.inject({ method: 'POST', url: '/api/auth/logout', headers: user.authorization });
    expect(out.statusCode).toBe(204);
    const after = await me(user.authorization.authorization);
    expect(after.statusCode).toBe(401);
    expect(after.headers['www-authenticate']).toMatch(/^Bearer /);
    expect((await refresh(user.refreshToken)).statusCode).toBe(401);
  });

  it('lists own sessions; deletes one; another user\'s session is a 404', async () => {
    const user = await registerAndLogin(t.app);
    const second = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: user.email, password: TEST_PASSWORD }, remoteAddress: '10.3.3.3' });
    const other = second.json() as { access_token: string; session_id: string };
    const stranger = await registerAndLogin(t.app);

    const list = await t.app.inject({ method: 'GET', url: '/api/auth/sessions', headers: user.authorization });
    const items = list.json().items as { id: string; current: boolean }[];
    expect(items.map((s) => s.id).sort()).toEqual([user.sessionId, other.session_id].sort());
    expect(items.find((s) => s.id === user.sessionId)!.current).toBe(true);
    expect(JSON.stringify(list.json())).not.toContain('refresh');

    const foreign = await t.app.inject({ method: 'DELETE', url: `/api/auth/sessions/${stranger.sessionId}`, headers: user.authorization });
    expect(foreign.statusCode).toBe(404);
    const missing = await t.app.inject({ method: 'DELETE', url: '/api/auth/sessions/00000000-0000-0000-0000-000000000000', headers: user.authorization });
    expect(missing.statusCode).toBe(404);
    expect(foreign.json()).toEqual(missing.json());
    expect((await me(stranger.authorization.authorization)).statusCode).toBe(200);

    const del = await t.app.inject({ method: 'DELETE', url: `/api/auth/sessions/${other.session_id}`, headers: user.authorization });
    expect(del.statusCode).toBe(204);
    expect((await me(`Bearer ${other.access_token}`)).statusCode).toBe(401);
    expect((await me(user.authorization.authorization)).statusCode).toBe(200);
  });

  it('DELETE /sessions ends every session but this one', async () => {
    const user = await registerAndLogin(t.app);
    const second = (
      await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: user.email, password: TEST_PASSWORD }, remoteAddress: '10.3.3.4' })
    ).json() as { access_token: string };
    const response = await t.app.inject({ method: 'DELETE', url: '/api/auth/sessions', headers: user.authorization });
    expect(response.json()).toEqual({ revoked: 1 });
    expect((await me(`Bearer ${second.access_token}`)).statusCode).toBe(401);
    expect((await me(user.authorization.authorization)).statusCode).toBe(200);
  });

  it('disabling a user and changing a role take effect on the next request', async () => {
    const { identity } = t.app.services;
    const admin = await signIn(t.app, { role: 'admin' });
    const victim = await registerAndLogin(t.app);
    const promoted = await registerAndLogin(t.app);
    expect((await me(victim.authorization.authorization)).statusCode).toBe(200);
    expect((await me(promoted.authorization.authorization)).statusCode).toBe(200);

    await identity.updateUser(victim.userId, { disabled: true }, { id: admin.userId });
    expect((await me(victim.authorization.authorization)).statusCode).toBe(401);
    expect((await refresh(victim.refreshToken)).statusCode).toBe(401);
    const relogin = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: victim.email, password: TEST_PASSWORD }, remoteAddress: '10.4.4.4' });
    expect(relogin.statusCode).toBe(401);

    await identity.updateUser(promoted.userId, { role: 'admin' }, { id: admin.userId });
    expect((await me(promoted.authorization.authorization)).statusCode).toBe(401);
    // a refresh hands out a token carrying the new role
    const fresh = (await refresh(promoted.refreshToken)).json() as { access_token: string };
    expect(decodeJwt(fresh.access_token).role).toBe('admin');
    expect((await me(`Bearer ${fresh.access_token}`)).statusCode).toBe(200);
  });

  it('a changed password ends the other sessions and is checked against the rules', async () => {
    const user = await registerAndLogin(t.app);
    const other = (
      await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: user.email, password: TEST_PASSWORD }, remoteAddress: '10.5.5.5' })
    ).json() as { access_token: string };
    const change = (current_password: string, new_password: string) =>
      t.app.inject({ method: 'POST', url: '/api/auth/password', headers: user.authorization, payload: { current_password, new_password } });
    expect((await change(TEST_PASSWORD, 'short')).json()).toMatchObject({ status: 422, type: 'urn:celforge:problem:weak-password' });
    expect((await change(TEST_PASSWORD, 'Password1234')).json()).toMatchObject({ type: 'urn:celforge:problem:weak-password' });
    expect((await change('wrong current password', 'a much better passphrase 9')).statusCode).toBe(403);
    expect((await change(TEST_PASSWORD, 'a much better passphrase 9')).statusCode).toBe(204);
    expect((await me(`Bearer ${other.access_token}`)).statusCode).toBe(401);
    expect((await me(user.authorization.authorization)).statusCode).toBe(200);
    const stored = await t.app.services.identity.findUserByEmail(user.email);
    expect(stored!.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
  });
});

describeEachDialect('identity: login throttling and audit', (dialect) => {
  // The route-class rate limits sit in front of the login throttle; widen them so the throttle itself is measured.
  const t = useTestApp(dialect, { limits: { ...DEFAULT_LIMITS, rates: parseRateLimits('signin-account=1000/15m,signin-ip=1000/60s') } });

  it('a 30-attempt burst from one address against one account is throttled with 429 and Retry-After, every attempt audited', async () => {
    const user = await registerAndLogin(t.app);
    const events: { action: string; outcome: string; detail?: Record<string, unknown> }[] = [];
    const original = t.app.services.audit.record.bind(t.app.services.audit);
    t.app.services.audit.record = (event) => {
      events.push(event);
      original(event);
    };
    try {
      // 30 wrong passwords and, last in the same burst, the right one: all are counted as they arrive
      const attempts = [...Array.from({ length: 30 }, (_, i) => `wrong password ${i}`), TEST_PASSWORD];
      const results = await Promise.all(
        attempts.map((password) => t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: user.email, password }, remoteAddress: '10.7.0.1' })),
      );
      const burst = results.slice(0, 30);
      const limited = burst.filter((r) => r.statusCode === 429);
      expect(limited.length).toBeGreaterThanOrEqual(20);
      expect(burst.filter((r) => r.statusCode === 200)).toHaveLength(0);
      expect(Number(limited[0]!.headers['retry-after'])).toBeGreaterThan(0);
      expect(limited[0]!.json()).toMatchObject({ status: 429, type: 'urn:celforge:problem:login-throttled' });
      // from the guessing address even the right password waits
      expect(results[30]!.statusCode).toBe(429);
      const logins = events.filter((e) => e.action === 'auth.login');
      expect(logins).toHaveLength(31);
      expect(logins.filter((e) => e.outcome === 'denied')).toHaveLength(limited.length + 1);
      expect(logins.filter((e) => e.outcome === 'failure')).toHaveLength(30 - limited.length);
      expect(JSON.stringify(events)).not.toContain('wrong password');
    } finally {
      t.app.services.audit.record = original;
    }
  });

  it('nobody locks an account out: 30 wrong passwords from 30 addresses, then the right one from a fresh address signs in', async () => {
    const user = await registerAndLogin(t.app);
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: user.email, password: `wrong password ${i}` }, remoteAddress: `10.17.0.${i}` }),
      ),
    );
    expect(results.map((r) => r.statusCode)).toEqual(Array(30).fill(401));
    const fresh = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: user.email, password: TEST_PASSWORD }, remoteAddress: '10.18.0.1' });
    expect(fresh.statusCode, fresh.body).toBe(200);
    // and the guessing addresses still get their own five tries each, not the owner's
    const again = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: user.email, password: TEST_PASSWORD }, remoteAddress: '10.17.0.3' });
    expect(again.statusCode).toBe(200);
  });

  it('throttles one client address trying many accounts', async () => {
    const burst = [];
    for (let i = 0; i < 25; i++) {
      burst.push(await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: `spray-${i}@example.test`, password: 'Winter2024!!' }, remoteAddress: '10.8.8.8' }));
    }
    expect(burst.slice(0, 20).every((r) => r.statusCode === 401)).toBe(true);
    expect(burst.some((r) => r.statusCode === 429)).toBe(true);
  });
});

describe('identity: first start', () => {
  const t = useTestApp('sqlite');
  it('creates one admin with a random password, once', async () => {
    const first = await t.app.services.identity.ensureFirstAdmin();
    expect(first?.generatedPassword).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(await t.app.services.identity.ensureFirstAdmin()).toBeNull();
    const login = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: first!.email, password: first!.generatedPassword } });
    expect(login.statusCode).toBe(200);
  });
});
