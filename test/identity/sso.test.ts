import { parseSetCookie } from 'cookie';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Config } from '../../src/config/config.js';
import type { SsoProviderSettings } from '../../src/config/sso.js';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { startOidcProvider, type OidcTestProvider } from '../support/oidc-provider.js';
import { ProviderBrowser } from '../support/oidc-flow.js';
import { TEST_PASSWORD } from '../support/users.js';

const ORIGIN = 'http://studio.test:8331';
const studio = { 'x-celforge-studio': '1', origin: ORIGIN };
const SECRET = 'test-client-secret-of-enough-length';

const settings = (issuer: string, id: string, change: Partial<SsoProviderSettings> = {}): SsoProviderSettings => ({
  id,
  name: `Test ${id}`,
  issuer,
  clientId: `celforge-${id}`,
  clientSecret: SECRET,
  scopes: ['openid', 'email', 'profile', 'groups'],
  roleClaim: 'groups',
  roleMap: { 'celforge-admins': 'admin', 'celforge-users': 'user' },
  emailDomains: ['studio.test'],
  autoProvision: true,
  mfaAmr: ['mfa'],
  mfaAcr: [],
  ...change,
});

describeEachDialect('single sign-on with OpenID Connect', (dialect) => {
  const overrides: Partial<Config> = { publicUrl: ORIGIN };
  let provider: OidcTestProvider;
  beforeAll(async () => {
    provider = await startOidcProvider({
      clients: ['open', 'strict'].map((id) => ({
        client_id: `celforge-${id}`,
        client_secret: SECRET,
        redirect_uris: [`${ORIGIN}/api/auth/sso/${id}/callback`],
        post_logout_redirect_uris: [`${ORIGIN}/signin`],
      })),
    });
    overrides.sso = [settings(provider.issuer, 'open'), settings(provider.issuer, 'strict', { autoProvision: false })];
  });
  const t = useTestApp(dialect, overrides);
  afterAll(async () => provider?.close());

  let n = 0;
  let addresses = 0;
  // each request from its own address, so the sign-in rate limit stays out of these tests
  const nextAddress = () => `10.9.${Math.floor(++addresses / 250)}.${addresses % 250}`;
  const person = (change: { email?: string; groups?: string[] } = {}) =>
    provider.addUser({ sub: `sub-${dialect}-${++n}`, email: `person${n}@studio.test`, email_verified: true, groups: ['celforge-users'], ...change });

  const cookieOf = (setCookie: string | string[] | undefined, name: string) => {
    const lines = Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : [];
    return lines.map((line) => parseSetCookie(line)).find((c) => c.name === name);
  };

  /** The browser's trip: Celforge start → provider (signs in as `login`) → the callback URL it comes back with. */
  const toProvider = async (id: string, login: string, start?: { url: string; binding: string }) => {
    let binding = start?.binding;
    let url = start?.url;
    if (!start) {
      const started = await t.app.inject({ method: 'GET', url: `/api/auth/sso/${id}/start`, remoteAddress: nextAddress() });
      expect(started.statusCode).toBe(303);
      const cookie = cookieOf(started.headers['set-cookie'], 'celforge_sso')!;
      expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'lax', path: '/api/auth/sso' });
      binding = cookie.value;
      url = String(started.headers.location);
    }
    const authorization = new URL(url!);
    expect(authorization.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authorization.searchParams.get('nonce')).toBeTruthy();
    const callback = await new ProviderBrowser().authorize(url!, login, `${ORIGIN}/api/auth/sso/${id}/callback`);
    return { callback, binding: binding! };
  };
  const finish = (callback: URL, binding: string | undefined, headers: Record<string, string> = {}) =>
    t.app.inject({ method: 'GET', url: `${callback.pathname}${callback.search}`, headers: { ...headers, ...(binding ? { cookie: `celforge_sso=${binding}` } : {}) }, remoteAddress: nextAddress() });
  const signInWith = async (id: string, login: string) => {
    const { callback, binding } = await toProvider(id, login);
    return finish(callback, binding);
  };
  const studioRefresh = (refresh: string) => t.app.inject({ method: 'POST', url: '/api/auth/browser/refresh', headers: { ...studio, cookie: `celforge_refresh=${refresh}` } });
  const audit = async (action: string) => {
    await t.app.services.audit.flush();
    const rows = await t.app.services.store.db.selectFrom('audit_log').select(['action', 'outcome', 'actor_id', 'detail']).where('action', '=', action).orderBy('seq').execute();
    return rows.map((row) => ({ ...row, detail: row.detail ? (JSON.parse(row.detail) as Record<string, unknown>) : null }));
  };
  const lastRefusal = async (action = 'sso.signin') => (await audit(action)).filter((r) => r.outcome !== 'success').at(-1);
  const expectProblem = (response: { statusCode: number; headers: Record<string, unknown>; json: () => unknown }, status: number, slug: string) => {
    expect(response.statusCode).toBe(status);
    expect(response.headers['content-type']).toContain('application/problem+json');
    expect(response.json()).toMatchObject({ status, type: `urn:celforge:problem:${slug}` });
    expect(JSON.stringify(response.json())).not.toMatch(/stack|\/work\//);
  };

  it('lists the providers for the sign-in page, without secrets', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/api/auth/sso/providers' });
    expect(response.json()).toEqual({ items: [{ id: 'open', name: 'Test open' }, { id: 'strict', name: 'Test strict' }] });
    expect(response.body).not.toContain(SECRET);
  });

  it('signs in through the provider: an account made for (issuer, sub), an ordinary session in the refresh cookie', async () => {
    const user = person();
    const response = await signInWith('open', user.sub);
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toBe('/');
    const refresh = cookieOf(response.headers['set-cookie'], 'celforge_refresh')!;
    expect(refresh).toMatchObject({ httpOnly: true, sameSite: 'strict', path: '/api/auth' });
    expect(cookieOf(response.headers['set-cookie'], 'celforge_sso')).toMatchObject({ value: '', maxAge: 0 });

    const tokens = await studioRefresh(refresh.value!);
    expect(tokens.statusCode).toBe(200);
    const me = await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `Bearer ${tokens.json().access_token}` } });
    expect(me.json()).toMatchObject({ email: user.email, role: 'user', totp_enabled: false });

    const link = await t.app.services.store.db.selectFrom('sso_links').selectAll().where('subject', '=', user.sub).executeTakeFirstOrThrow();
    expect(link).toMatchObject({ issuer: provider.issuer, provider: 'open', user_id: me.json().id });
    expect((await audit('sso.signin')).at(-1)).toMatchObject({ outcome: 'success', actor_id: me.json().id, detail: { provider: 'open', provisioned: true, mfa: false } });

    // The link is the subject, not the e-mail: a new address at the provider is the same account.
    user.email = `renamed${n}@studio.test`;
    const again = await signInWith('open', user.sub);
    const second = await studioRefresh(cookieOf(again.headers['set-cookie'], 'celforge_refresh')!.value!);
    const me2 = await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `Bearer ${second.json().access_token}` } });
    expect(me2.json().id).toBe(me.json().id);
  });

  it('refuses a tampered state, a replayed callback and a replayed code, and audits each', async () => {
    const user = person();
    const { callback, binding } = await toProvider('open', user.sub);
    const tampered = new URL(callback);
    tampered.searchParams.set('state', 'x'.repeat(43));
    expectProblem(await finish(tampered, binding), 400, 'sso-refused');
    expect(await lastRefusal()).toMatchObject({ outcome: 'failure', detail: { provider: 'open', reason: 'state-unknown' } });

    // without the attempt's cookie (another browser) the callback is refused too
    expectProblem(await finish(callback, undefined), 400, 'sso-refused');
    expect((await lastRefusal())!.detail).toMatchObject({ reason: 'attempt-cookie' });

    expect((await finish(callback, binding)).statusCode).toBe(303);
    expectProblem(await finish(callback, binding), 400, 'sso-refused');
    expect((await lastRefusal())!.detail).toMatchObject({ reason: 'attempt-reused' });

    // a fresh attempt carrying the code already spent: the provider refuses to exchange it again
    const fresh = await toProvider('open', user.sub);
    const replayed = new URL(fresh.callback);
    replayed.searchParams.set('code', callback.searchParams.get('code')!);
    expectProblem(await finish(replayed, fresh.binding), 400, 'sso-refused');
    expect((await lastRefusal())!.detail).toMatchObject({ reason: 'invalid_grant' });
  });

  it('refuses an ID token with a wrong nonce, a wrong issuer or an expiry in the past', async () => {
    const user = person();
    const now = Math.floor(Date.now() / 1000);
    const cases: [string, (c: Record<string, unknown>) => Record<string, unknown>, RegExp][] = [
      ['nonce', (c) => ({ ...c, nonce: 'another-attempt' }), /nonce/],
      ['issuer', (c) => ({ ...c, iss: 'https://evil.example' }), /iss/],
      ['expired', (c) => ({ ...c, iat: now - 7200, exp: now - 3600 }), /exp|TIMESTAMP/i],
    ];
    for (const [, change, reason] of cases) {
      const { callback, binding } = await toProvider('open', user.sub);
      provider.tamperNextIdToken(change);
      const response = await finish(callback, binding);
      expectProblem(response, 400, 'sso-refused');
      expect(cookieOf(response.headers['set-cookie'], 'celforge_refresh')).toBeUndefined();
      expect(String((await lastRefusal())!.detail!.reason)).toMatch(reason);
    }
    // an issuer parameter that is not the provider's (RFC 9207) is refused before any exchange
    const { callback, binding } = await toProvider('open', user.sub);
    callback.searchParams.set('iss', 'https://evil.example');
    expectProblem(await finish(callback, binding), 400, 'sso-refused');
    expect(String((await lastRefusal())!.detail!.reason)).toMatch(/iss|ISS/);
  });

  it('refuses an unknown subject when auto-provisioning is off, and an e-mail domain not allowed', async () => {
    const stranger = person();
    expectProblem(await signInWith('strict', stranger.sub), 403, 'sso-account-unknown');
    expect(await lastRefusal()).toMatchObject({ detail: { provider: 'strict', reason: 'unknown-subject' } });

    const outsider = person({ email: `someone${n}@elsewhere.example` });
    expectProblem(await signInWith('open', outsider.sub), 403, 'sso-email-domain');
    expect((await lastRefusal())!.detail).toMatchObject({ reason: 'email-domain' });
    const count = await t.app.services.store.db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).where('email', '=', outsider.email!).executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(0);
  });

  it('sends a browser that is refused back to the sign-in page with the reason', async () => {
    const stranger = person();
    const { callback, binding } = await toProvider('strict', stranger.sub);
    const response = await finish(callback, binding, { accept: 'text/html,application/xhtml+xml' });
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toBe('/signin?sso_error=sso-account-unknown');
  });

  it('never links by e-mail alone: the owner of the local account signs in, links, and may unlink', async () => {
    const local = await t.app.services.identity.createUser({ email: `local${++n}@studio.test`, password: TEST_PASSWORD, role: 'user' });
    const sameEmail = provider.addUser({ sub: `sub-${dialect}-collide-${n}`, email: local.email, email_verified: true, groups: ['celforge-users'] });
    expectProblem(await signInWith('open', sameEmail.sub), 409, 'sso-link-required');
    expect((await lastRefusal())!.detail).toMatchObject({ reason: 'email-collision' });

    const login = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: local.email, password: TEST_PASSWORD }, remoteAddress: '10.9.1.1' });
    const authorization = { authorization: `Bearer ${login.json().access_token}` };
    const started = await t.app.inject({ method: 'POST', url: '/api/auth/sso/open/link', headers: authorization });
    expect(started.statusCode).toBe(200);
    const binding = cookieOf(started.headers['set-cookie'], 'celforge_sso')!.value!;
    const { callback } = await toProvider('open', sameEmail.sub, { url: started.json().url, binding });
    const linked = await finish(callback, binding);
    expect(linked.statusCode).toBe(303);
    expect(linked.headers.location).toBe('/account?linked=open');
    expect((await audit('sso.link')).at(-1)).toMatchObject({ outcome: 'success', actor_id: local.id });

    const signedIn = await signInWith('open', sameEmail.sub);
    const tokens = await studioRefresh(cookieOf(signedIn.headers['set-cookie'], 'celforge_refresh')!.value!);
    const me = await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `Bearer ${tokens.json().access_token}` } });
    expect(me.json().id).toBe(local.id);

    const links = await t.app.inject({ method: 'GET', url: '/api/auth/sso/links', headers: authorization });
    expect(links.json().items).toMatchObject([{ provider: 'open', provider_name: 'Test open', email: local.email }]);
    const unlinked = await t.app.inject({ method: 'DELETE', url: `/api/auth/sso/links/${links.json().items[0].id}`, headers: authorization });
    expect(unlinked.statusCode).toBe(204);
    expect((await audit('sso.unlink')).at(-1)).toMatchObject({ outcome: 'success', actor_id: local.id });
    expectProblem(await signInWith('open', sameEmail.sub), 409, 'sso-link-required');

    // a refused link sends the browser back to the account page with the reason
    const outsider = provider.addUser({ sub: `sub-${dialect}-outsider-${n}`, email: `x${n}@elsewhere.example`, groups: ['celforge-users'] });
    const again = await t.app.inject({ method: 'POST', url: '/api/auth/sso/open/link', headers: authorization });
    const againBinding = cookieOf(again.headers['set-cookie'], 'celforge_sso')!.value!;
    const refusedLink = await toProvider('open', outsider.sub, { url: again.json().url, binding: againBinding });
    const back = await finish(refusedLink.callback, againBinding, { accept: 'text/html' });
    expect(back.headers.location).toBe('/account?sso_error=sso-email-domain');
    expect(await lastRefusal('sso.link')).toMatchObject({ actor_id: local.id, detail: { reason: 'email-domain' } });

    // links are account management: never for API keys, never someone else's
    const other = await signIn(t.app);
    const foreign = await t.app.inject({ method: 'DELETE', url: `/api/auth/sso/links/${links.json().items[0].id}`, headers: other.authorization });
    expectProblem(foreign, 404, 'not-found');
  });

  it("keeps the last way into an account made by sign-on, and maps the provider's groups to the role", async () => {
    const user = person({ groups: ['celforge-admins'] });
    const response = await signInWith('open', user.sub);
    const tokens = (await studioRefresh(cookieOf(response.headers['set-cookie'], 'celforge_refresh')!.value!)).json();
    const authorization = { authorization: `Bearer ${tokens.access_token}` };
    expect((await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: authorization })).json().role).toBe('admin');
    // no second factor asserted by the provider and none enrolled here: no admin work
    expectProblem(await t.app.inject({ method: 'GET', url: '/api/auth/users', headers: authorization }), 403, 'enrol-2fa');
    const [link] = (await t.app.inject({ method: 'GET', url: '/api/auth/sso/links', headers: authorization })).json().items;
    expectProblem(await t.app.inject({ method: 'DELETE', url: `/api/auth/sso/links/${link.id}`, headers: authorization }), 409, 'conflict');

    user.groups = ['nobody'];
    expectProblem(await signInWith('open', user.sub), 403, 'sso-no-role');
  });

  it("counts the provider's MFA assertion as the admin's second factor when configured", async () => {
    const user = person({ groups: ['celforge-admins'] });
    const { callback, binding } = await toProvider('open', user.sub);
    // the provider's ID token says a second factor was checked (signed with its key)
    provider.tamperNextIdToken((claims) => ({ ...claims, amr: ['pwd', 'mfa'] }));
    const response = await finish(callback, binding);
    const tokens = (await studioRefresh(cookieOf(response.headers['set-cookie'], 'celforge_refresh')!.value!)).json();
    const users = await t.app.inject({ method: 'GET', url: '/api/auth/users', headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect(users.statusCode, users.body).toBe(200);
    expect((await audit('sso.signin')).at(-1)).toMatchObject({ outcome: 'success', detail: { mfa: true } });
  });

  it('revokes the session when the provider posts a valid logout token, and refuses invalid ones', async () => {
    const user = person();
    const response = await signInWith('open', user.sub);
    const refresh = cookieOf(response.headers['set-cookie'], 'celforge_refresh')!.value!;
    const tokens = await studioRefresh(refresh);
    const rotated = cookieOf(tokens.headers['set-cookie'], 'celforge_refresh')!.value!;
    const authorization = { authorization: `Bearer ${tokens.json().access_token}` };
    const post = (token: string) =>
      t.app.inject({ method: 'POST', url: '/api/auth/sso/open/backchannel-logout', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `logout_token=${token}` });

    const aud = 'celforge-open';
    const bad: [string, Promise<string>][] = [
      ['audience', provider.logoutToken({ sub: user.sub, aud: 'someone-else' })],
      ['nonce', provider.logoutToken({ sub: user.sub, aud }, { nonce: 'n' })],
      ['events', provider.logoutToken({ sub: user.sub, aud }, { events: undefined })],
      ['neither sub nor sid', provider.logoutToken({ aud })],
      ['typ', provider.logoutToken({ sub: user.sub, aud }, {}, { typ: 'JWT+other' })],
      ['signature', provider.logoutToken({ sub: user.sub, aud }).then((token) => `${token.slice(0, -4)}AAAA`)],
    ];
    for (const [, token] of bad) {
      expectProblem(await post(await token), 400, 'invalid-logout-token');
      expect((await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: authorization })).statusCode).toBe(200);
    }
    expect((await audit('sso.logout')).filter((r) => r.outcome === 'failure').length).toBeGreaterThanOrEqual(bad.length);

    const good = await provider.logoutToken({ sub: user.sub, aud });
    const done = await post(good);
    expect(done.statusCode).toBe(200);
    expect(done.headers['cache-control']).toBe('no-store');
    expect((await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: authorization })).statusCode).toBe(401);
    expect((await studioRefresh(rotated)).statusCode).toBe(401);
    expect((await audit('sso.logout')).at(-1)).toMatchObject({ outcome: 'success', detail: { provider: 'open', via: 'backchannel', sessions: 1 } });
    // the same token again is a replay
    expectProblem(await post(good), 400, 'invalid-logout-token');
    expect((await lastRefusal('sso.logout'))!.detail).toMatchObject({ reason: 'replayed' });
  });

  it("revokes only the sessions of the provider session a logout token names by `sid`", async () => {
    const user = person();
    const open = async (sid: string) => {
      const { callback, binding } = await toProvider('open', user.sub);
      provider.tamperNextIdToken((claims) => ({ ...claims, sid }));
      const response = await finish(callback, binding);
      const tokens = await studioRefresh(cookieOf(response.headers['set-cookie'], 'celforge_refresh')!.value!);
      return { authorization: `Bearer ${tokens.json().access_token}` };
    };
    const first = await open(`sid-${dialect}-a`);
    const second = await open(`sid-${dialect}-b`);
    const token = await provider.logoutToken({ sid: `sid-${dialect}-a`, aud: 'celforge-open' });
    const done = await t.app.inject({ method: 'POST', url: '/api/auth/sso/open/backchannel-logout', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `logout_token=${token}` });
    expect(done.statusCode).toBe(200);
    expect((await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: first })).statusCode).toBe(401);
    expect((await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: second })).statusCode).toBe(200);
  });

  it("signs out with the provider's logout address for a sign-on session (RP-initiated logout)", async () => {
    const user = person();
    const response = await signInWith('open', user.sub);
    const refresh = cookieOf(response.headers['set-cookie'], 'celforge_refresh')!.value!;
    const out = await t.app.inject({ method: 'POST', url: '/api/auth/sso/logout', headers: { ...studio, cookie: `celforge_refresh=${refresh}` } });
    expect(out.statusCode).toBe(200);
    const url = new URL(out.json().logout_url);
    expect(url.origin + url.pathname).toBe(`${provider.issuer}/session/end`);
    expect(url.searchParams.get('client_id')).toBe('celforge-open');
    expect(url.searchParams.get('post_logout_redirect_uri')).toBe(`${ORIGIN}/signin`);
    expect((await studioRefresh(refresh)).statusCode).toBe(401);
    expect((await audit('sso.logout')).at(-1)).toMatchObject({ outcome: 'success', detail: { via: 'rp-initiated' } });
    // a password session has no provider to leave
    const other = await t.app.services.identity.createUser({ email: `pw${++n}@studio.test`, password: TEST_PASSWORD, role: 'user' });
    const login = await t.app.inject({ method: 'POST', url: '/api/auth/browser/login', headers: studio, payload: { email: other.email, password: TEST_PASSWORD }, remoteAddress: '10.9.2.1' });
    const cookie = cookieOf(login.headers['set-cookie'], 'celforge_refresh')!.value!;
    const plain = await t.app.inject({ method: 'POST', url: '/api/auth/sso/logout', headers: { ...studio, cookie: `celforge_refresh=${cookie}` } });
    expect(plain.json()).toEqual({ logout_url: null });
  });
});
