import { expect, it } from 'vitest';
import { API_KEY_SCOPES, type ApiKeyScope } from '../../src/access/principal.js';
import type { RouteAccessEntry } from '../../src/access/authentication.js';
import { useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { signIn } from '../support/users.js';
import { createKey, type CreatedKey } from './api-keys-support.js';

const SOME_ID = '00000000-0000-4000-8000-000000000000';

/** Routes that manage how one signs in: never open to an API key, whatever its scopes. */
const ACCOUNT_MANAGEMENT = /^\/api\/auth\/(password|totp|sessions|api-keys|logout|step-up|login|refresh|me|verify)\b/;

/** What the main routes must declare (a walk alone would accept a route declaring a too-weak scope). */
const PINNED: Record<string, ApiKeyScope> = {
  'POST /api/anime/generate': 'jobs:write',
  'POST /api/anime/jobs/:id/cancel': 'jobs:write',
  'GET /api/anime/jobs': 'jobs:read',
  'GET /api/anime/jobs/:id': 'jobs:read',
  'GET /api/anime/jobs/:id/events': 'jobs:read',
  'POST /api/anime/jobs/:id/publish': 'gallery:publish',
  'DELETE /api/anime/jobs/:id/publish': 'gallery:publish',
  'GET /api/anime/admin/stats': 'admin',
  'GET /api/auth/users': 'admin',
  'PATCH /api/auth/users/:id': 'admin',
  'DELETE /api/auth/users/:id/totp': 'admin',
};

const urlOf = (route: RouteAccessEntry) => route.url.replace(/:[A-Za-z_]+/g, SOME_ID).replace(/\*$/, 'x');

describeEachDialect('API-key authority: every route declares its scope, deny by default', (dialect) => {
  const t = useTestApp(dialect);

  it('declares a scope only where it should, and the declarations pinned here', () => {
    const routes = t.app.routeAccess;
    expect(routes.length).toBeGreaterThan(20);
    for (const route of routes) {
      const name = `${route.method} ${route.url}`;
      if (ACCOUNT_MANAGEMENT.test(route.url)) expect(route.scope, `${name} is account management`).toBeUndefined();
      if (route.role === 'admin') expect(route.scope, `${name} is an admin route`).toBe('admin');
    }
    for (const [name, scope] of Object.entries(PINNED)) {
      const route = routes.find((r) => `${r.method} ${r.url}` === name);
      expect(route?.scope, name).toBe(scope);
    }
  });

  it('walks every route with a key of each scope: refused unless the route declares that scope', async () => {
    const owner = await signIn(t.app, { role: 'admin' }); // enrolled and stepped up: may grant "admin"
    const keys: CreatedKey[] = [];
    for (const scope of API_KEY_SCOPES) keys.push(await createKey(t.app, owner, { name: scope, scopes: [scope] }));
    const checked: string[] = [];
    for (const route of t.app.routeAccess) {
      if (route.auth === 'public') continue;
      for (const [index, key] of keys.entries()) {
        const scope = API_KEY_SCOPES[index]!;
        // both header forms
        const headers = index % 2 === 0 ? { 'x-api-key': key.key } : { authorization: `ApiKey ${key.key}` };
        const response = await t.app.inject({
          method: route.method as 'GET',
          url: urlOf(route),
          headers,
          ...(['POST', 'PUT', 'PATCH'].includes(route.method) ? { payload: {} } : {}),
        });
        const where = `${route.method} ${route.url} with a "${scope}" key: ${response.statusCode} ${response.body.slice(0, 200)}`;
        expect(response.statusCode, where).toBeLessThan(500);
        // JSON and problems carry a type; JSON lines (the audit export) are many documents
        const type = /[/+]json\b/.test(String(response.headers['content-type'])) ? (response.json() as { type?: string }).type : undefined;
        if (route.scope === undefined) {
          expect(response.statusCode, where).toBe(401);
          expect(type, where).toBe('urn:celforge:problem:api-key-not-accepted');
        } else if (route.scope !== scope) {
          expect(response.statusCode, where).toBe(403);
          expect(type, where).toBe('urn:celforge:problem:insufficient-scope');
        } else {
          expect(type, where).not.toBe('urn:celforge:problem:api-key-not-accepted');
          expect(type, where).not.toBe('urn:celforge:problem:insufficient-scope');
          expect(response.statusCode, where).not.toBe(403);
        }
        checked.push(route.url);
      }
    }
    expect(checked).toContain('/api/auth/password');
    expect(checked).toContain('/api/auth/totp/enable');
    expect(checked).toContain('/api/anime/generate');
  });

  it('a "jobs:read" key cannot generate, change the password, set up 2FA, list sessions or make keys', async () => {
    const owner = await signIn(t.app);
    const key = await createKey(t.app, owner, { name: 'reader', scopes: ['jobs:read'] });
    const send = (method: 'GET' | 'POST', url: string, payload?: object) => t.app.inject({ method, url, headers: { 'x-api-key': key.key }, payload });
    expect((await send('GET', '/api/anime/jobs')).statusCode).toBe(200);
    const generate = await send('POST', '/api/anime/generate', { prompt: 'a fox', type: 'image' });
    expect(generate.json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:insufficient-scope' });
    for (const [method, url, payload] of [
      ['POST', '/api/auth/password', { current_password: 'x', new_password: 'y' }],
      ['POST', '/api/auth/totp/setup', undefined],
      ['GET', '/api/auth/sessions', undefined],
      ['POST', '/api/auth/api-keys', { name: 'more', scopes: ['jobs:read'] }],
    ] as const) {
      const response = await send(method, url, payload);
      expect(response.json(), url).toMatchObject({ status: 401, type: 'urn:celforge:problem:api-key-not-accepted' });
    }
    const row = await t.app.services.store.db.selectFrom('users').select(['totp_secret']).where('id', '=', owner.userId).executeTakeFirstOrThrow();
    expect(row.totp_secret).toBeNull();
  });

  it('GET /api/auth/verify with an API key in either header form is a 401 problem', async () => {
    const owner = await signIn(t.app);
    const key = await createKey(t.app, owner, { name: 'verify', scopes: API_KEY_SCOPES.filter((s) => s !== 'admin') });
    for (const headers of [{ 'x-api-key': key.key }, { authorization: `ApiKey ${key.key}` }]) {
      const response = await t.app.inject({ method: 'GET', url: '/api/auth/verify', headers });
      expect(response.statusCode).toBe(401);
      expect(response.headers['content-type']).toContain('application/problem+json');
    }
  });

  it('the OpenAPI document shows each operation’s scope from the same declaration', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/api/anime/openapi.json' })).json() as {
      paths: Record<string, Record<string, { security?: Record<string, string[]>[]; 'x-celforge-api-key-scope'?: string | null }>>;
    };
    let seen = 0;
    for (const route of t.app.routeAccess) {
      const path = route.url.replace(/:([A-Za-z_]+)/g, '{$1}');
      const operation = doc.paths[path]?.[route.method.toLowerCase()];
      if (!operation) continue; // hidden routes
      seen++;
      const expected = route.auth === 'public' ? null : (route.scope ?? null);
      expect(operation['x-celforge-api-key-scope'], `${route.method} ${route.url}`).toBe(expected);
      const schemes = (operation.security ?? []).flatMap((s) => Object.keys(s));
      expect(schemes.includes('apiKey'), `${route.method} ${route.url}`).toBe(expected !== null);
    }
    expect(seen).toBeGreaterThan(15);
  });
});

describeEachDialect('API-key authority: admin-scope keys need an admin with a second factor', (dialect) => {
  const t = useTestApp(dialect);
  const createAdminKey = (authorization: { authorization: string }) =>
    t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: authorization, payload: { name: 'ops', scopes: ['admin'] } });
  const stats = (key: string) => t.app.inject({ method: 'GET', url: '/api/anime/admin/stats', headers: { 'x-api-key': key } });

  it('creating one needs enrolled 2FA and a fresh step-up; other scopes do not', async () => {
    const unenrolled = await signIn(t.app, { role: 'admin', steppedUp: false });
    expect((await createAdminKey(unenrolled.authorization)).json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:enrol-2fa' });
    await createKey(t.app, unenrolled, { name: 'reader', scopes: ['jobs:read'] });

    const stale = await signIn(t.app, { role: 'admin' });
    await t.app.services.store.db.updateTable('sessions').set({ mfa_at: new Date(Date.now() - 16 * 60_000).toISOString() }).where('id', '=', stale.sessionId).execute();
    expect((await createAdminKey(stale.authorization)).json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:step-up-required' });

    const fresh = await signIn(t.app, { role: 'admin' });
    const created = await createAdminKey(fresh.authorization);
    expect(created.statusCode).toBe(201);
    expect((await stats(created.json().key)).statusCode).toBe(200);
  });

  it('using one needs the owner still an admin with 2FA: a reset or a demotion stops it on the next request', async () => {
    const operator = await signIn(t.app, { role: 'admin' });
    const owner = await signIn(t.app, { role: 'admin' });
    const key = await createKey(t.app, owner, { name: 'ops', scopes: ['admin', 'jobs:read'] });
    expect((await stats(key.key)).statusCode).toBe(200); // cached now

    const reset = await t.app.inject({ method: 'DELETE', url: `/api/auth/users/${owner.userId}/totp`, headers: operator.authorization });
    expect(reset.statusCode).toBe(204);
    expect((await stats(key.key)).json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:insufficient-scope' });
    // its other scopes still work
    expect((await t.app.inject({ method: 'GET', url: '/api/anime/jobs', headers: { 'x-api-key': key.key } })).statusCode).toBe(200);

    // enrolled again (as in the store), then demoted
    await t.app.services.store.db.updateTable('users').set({ totp_enabled: 1 }).where('id', '=', owner.userId).execute();
    await t.app.services.apiKeys.evictUserKeys(owner.userId);
    expect((await stats(key.key)).statusCode).toBe(200);
    const demote = await t.app.inject({ method: 'PATCH', url: `/api/auth/users/${owner.userId}`, headers: operator.authorization, payload: { role: 'user' } });
    expect(demote.statusCode).toBe(200);
    expect((await stats(key.key)).statusCode).toBe(403);
  });

  it('disabling the owner stops every key of theirs on the next request (no 30 s cache window)', async () => {
    const operator = await signIn(t.app, { role: 'admin' });
    const owner = await signIn(t.app);
    const key = await createKey(t.app, owner, { name: 'reader', scopes: ['jobs:read'] });
    const jobs = () => t.app.inject({ method: 'GET', url: '/api/anime/jobs', headers: { 'x-api-key': key.key } });
    expect((await jobs()).statusCode).toBe(200);
    const disable = await t.app.inject({ method: 'PATCH', url: `/api/auth/users/${owner.userId}`, headers: operator.authorization, payload: { disabled: true } });
    expect(disable.statusCode).toBe(200);
    expect((await jobs()).statusCode).toBe(401);
  });
});
