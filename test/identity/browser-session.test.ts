import { parseSetCookie } from 'cookie';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, parseRateLimits } from '../../src/config/config.js';
import { parseRateField } from '../limits/routes.js';
import { useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { TEST_PASSWORD } from '../support/users.js';

const ORIGIN = 'http://studio.test:8331';
const studioHeaders = { 'x-celforge-studio': '1', origin: ORIGIN };

function refreshCookie(setCookie: string | string[] | undefined) {
  const line = Array.isArray(setCookie) ? setCookie[0] : setCookie;
  if (!line) throw new Error('no Set-Cookie');
  return parseSetCookie(line);
}

describeEachDialect('identity: the studio session in an httpOnly cookie', (dialect) => {
  const t = useTestApp(dialect, { publicUrl: ORIGIN });
  let n = 0;
  const newUser = async () => {
    const email = `browser-${dialect}-${++n}@example.test`;
    await t.app.services.identity.createUser({ email, password: TEST_PASSWORD, role: 'user' });
    return email;
  };
  const login = (email: string, headers: Record<string, string> = studioHeaders) =>
    t.app.inject({ method: 'POST', url: '/api/auth/browser/login', headers, payload: { email, password: TEST_PASSWORD }, remoteAddress: `10.7.0.${n}` });
  const refresh = (cookie: string | undefined, headers: Record<string, string> = studioHeaders) =>
    t.app.inject({ method: 'POST', url: '/api/auth/browser/refresh', headers: { ...headers, ...(cookie ? { cookie: `celforge_refresh=${cookie}` } : {}) } });
  const me = (token: string) => t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `Bearer ${token}` } });

  it('signs in with the refresh token only in an httpOnly, SameSite=Strict cookie on /api/auth', async () => {
    const email = await newUser();
    const response = await login(email);
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in', 'session_id', 'token_type']);
    const cookie = refreshCookie(response.headers['set-cookie']);
    expect(cookie).toMatchObject({ name: 'celforge_refresh', path: '/api/auth', httpOnly: true, sameSite: 'strict' });
    expect(cookie.secure).toBeFalsy();
    expect(cookie.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await me(body.access_token)).json()).toMatchObject({ email });
  });

  it('refuses sign-in, refresh and sign-out without the studio header or from another origin', async () => {
    const email = await newUser();
    const cookie = refreshCookie((await login(email)).headers['set-cookie']).value!;
    const variants: Record<string, string>[] = [{ origin: ORIGIN }, { 'x-celforge-studio': '1' }, { 'x-celforge-studio': '1', origin: 'https://evil.example' }];
    for (const headers of variants) {
      const refused = [
        await login(email, headers),
        await refresh(cookie, headers),
        await t.app.inject({ method: 'POST', url: '/api/auth/browser/logout', headers: { ...headers, cookie: `celforge_refresh=${cookie}` } }),
      ];
      for (const response of refused) {
        expect(response.statusCode).toBe(403);
        expect(response.headers['content-type']).toContain('application/problem+json');
        expect(response.headers['set-cookie']).toBeUndefined();
      }
    }
    // the cookie was never spent by the refused requests
    expect((await refresh(cookie)).statusCode).toBe(200);
  });

  it('refreshes from the cookie, rotates it, and a replayed old cookie ends the session', async () => {
    const email = await newUser();
    const first = refreshCookie((await login(email)).headers['set-cookie']).value!;
    const rotated = await refresh(first);
    expect(rotated.statusCode).toBe(200);
    const second = refreshCookie(rotated.headers['set-cookie']).value!;
    expect(second).not.toBe(first);
    expect((await me(rotated.json().access_token)).statusCode).toBe(200);
    const again = await refresh(second);
    expect(again.statusCode).toBe(200);
    const third = refreshCookie(again.headers['set-cookie']).value!;
    const token = again.json().access_token as string;

    // The second cookie was used, so the first coming back is a replay, not a retry of a lost answer.
    const replay = await refresh(first);
    expect(replay.statusCode).toBe(401);
    expect(refreshCookie(replay.headers['set-cookie'])).toMatchObject({ value: '', maxAge: 0 });
    expect((await me(token)).statusCode).toBe(401);
    expect((await refresh(third)).statusCode).toBe(401);
  });

  it('answers a refresh with no cookie with 204 and no token, and a dead cookie with 401', async () => {
    const none = await refresh(undefined);
    expect(none.statusCode).toBe(204);
    expect(none.body).toBe('');
    const dead = await refresh('A'.repeat(43));
    expect(dead.statusCode).toBe(401);
    expect(dead.json()).toMatchObject({ type: 'urn:celforge:problem:invalid-grant', status: 401 });
    expect(refreshCookie(dead.headers['set-cookie'])).toMatchObject({ value: '', maxAge: 0 });
  });

  it('signs out: the session ends server-side and the cookie is cleared', async () => {
    const email = await newUser();
    const signedIn = await login(email);
    const cookie = refreshCookie(signedIn.headers['set-cookie']).value!;
    const token = signedIn.json().access_token as string;
    const out = await t.app.inject({ method: 'POST', url: '/api/auth/browser/logout', headers: { ...studioHeaders, cookie: `celforge_refresh=${cookie}` } });
    expect(out.statusCode).toBe(204);
    expect(refreshCookie(out.headers['set-cookie'])).toMatchObject({ name: 'celforge_refresh', value: '', maxAge: 0, path: '/api/auth' });
    expect((await me(token)).statusCode).toBe(401);
    expect((await refresh(cookie)).statusCode).toBe(401);
    await t.app.services.audit.flush();
    const rows = await t.app.services.store.db.selectFrom('audit_log').select(['target', 'outcome']).where('action', '=', 'auth.logout').execute();
    expect(rows).toContainEqual({ target: signedIn.json().session_id, outcome: 'success' });
  });

  it('keeps the body-based refresh for API clients', async () => {
    const email = await newUser();
    const login = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password: TEST_PASSWORD }, remoteAddress: '10.7.1.1' });
    expect(login.headers['set-cookie']).toBeUndefined();
    const response = await t.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: login.json().refresh_token } });
    expect(response.statusCode).toBe(200);
    expect(response.json().refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('identity: the refresh cookie is Secure when the public URL is https', () => {
  const t = useTestApp('sqlite', { publicUrl: 'https://studio.example' });
  it('sets Secure', async () => {
    await t.app.services.identity.createUser({ email: 'secure@example.test', password: TEST_PASSWORD, role: 'user' });
    const response = await t.app.inject({
      method: 'POST',
      url: '/api/auth/browser/login',
      headers: { 'x-celforge-studio': '1', origin: 'https://studio.example' },
      payload: { email: 'secure@example.test', password: TEST_PASSWORD },
    });
    expect(response.statusCode).toBe(200);
    expect(refreshCookie(response.headers['set-cookie'])).toMatchObject({ secure: true, httpOnly: true, sameSite: 'strict' });
  });
});

describeEachDialect('identity: refreshing the studio has its own rate budget, apart from sign-in', (dialect) => {
  const limits = { ...DEFAULT_LIMITS, rates: parseRateLimits('signin-ip=3/60s,refresh=8/60s') };
  const t = useTestApp(dialect, { publicUrl: ORIGIN, limits });
  const address = '10.9.0.1';

  it('many tab reloads from one address neither spend nor are stopped by its sign-in attempts', async () => {
    const email = `reloads-${dialect}@example.test`;
    await t.app.services.identity.createUser({ email, password: TEST_PASSWORD, role: 'user' });
    const login = () =>
      t.app.inject({ method: 'POST', url: '/api/auth/browser/login', headers: studioHeaders, payload: { email, password: TEST_PASSWORD }, remoteAddress: address });
    const refresh = (cookie?: string) =>
      t.app.inject({ method: 'POST', url: '/api/auth/browser/refresh', headers: { ...studioHeaders, ...(cookie && { cookie: `celforge_refresh=${cookie}` }) }, remoteAddress: address });

    const signedIn = await login();
    expect(signedIn.statusCode).toBe(200);
    let cookie = refreshCookie(signedIn.headers['set-cookie']).value!;
    // Eight loads: visitors without a cookie and a signed-in studio refreshing, all from one address.
    for (let i = 0; i < 4; i++) expect((await refresh()).statusCode).toBe(204);
    for (let i = 0; i < 4; i++) {
      const refreshed = await refresh(cookie);
      expect(refreshed.statusCode).toBe(200);
      expect(parseRateField(refreshed.headers['ratelimit-policy'])).toEqual({ refresh: { q: 8, w: 60 } });
      expect(parseRateField(refreshed.headers.ratelimit).refresh!.r).toBe(3 - i);
      cookie = refreshCookie(refreshed.headers['set-cookie']).value!;
    }
    // The refresh budget is spent: a ninth is refused under its own policy, the cookie unspent.
    const refused = await refresh(cookie);
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['content-type']).toContain('application/problem+json');
    expect(refused.json()).toMatchObject({ type: 'urn:celforge:problem:rate-limited', policy: 'refresh' });
    expect(refused.headers['set-cookie']).toBeUndefined();
    // Signing in from that address still works: one of three sign-in attempts was used.
    const again = await login();
    expect(again.statusCode).toBe(200);
    expect(parseRateField(again.headers.ratelimit)['signin-ip']!.r).toBe(1);
  });

  it('the body-based refresh of API clients is charged to the same budget', async () => {
    const email = `api-refresh-${dialect}@example.test`;
    await t.app.services.identity.createUser({ email, password: TEST_PASSWORD, role: 'user' });
    const login = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password: TEST_PASSWORD }, remoteAddress: '10.9.0.2' });
    const response = await t.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: login.json().refresh_token }, remoteAddress: '10.9.0.2' });
    expect(response.statusCode).toBe(200);
    expect(parseRateField(response.headers['ratelimit-policy'])).toEqual({ refresh: { q: 8, w: 60 } });
  });
});
