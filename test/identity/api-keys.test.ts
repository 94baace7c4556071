import { createHash, createHmac } from 'node:crypto';
import { readFileSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { parseMasterKey } from '../../src/identity/encryption.js';
import { describeEachDialect } from '../support/dialects.js';
import { signIn, useTestApp } from '../support/app.js';
import { apiKeyHeader, createKey, testRoutes } from './api-keys-support.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describeEachDialect('API keys', (dialect) => {
  const t = useTestApp(dialect, {}, { extraRoutes: testRoutes });

  describe('creation', () => {
    it('shows the key and a random signing secret once, stores only the key’s SHA-256 and the secret encrypted', async () => {
      const user = await signIn(t.app);
      const record = vi.spyOn(t.app.services.audit, 'record');
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/auth/api-keys',
        headers: user.authorization,
        payload: { name: 'render farm', scopes: ['jobs:read', 'jobs:write'] },
      });
      expect(res.statusCode).toBe(201);
      expect(res.headers['cache-control']).toContain('no-store');
      const created = res.json();
      expect(created.key).toMatch(/^cfk_[0-9a-f]{24}_[A-Za-z0-9_-]{43}$/);
      expect(created.key.startsWith(`cfk_${created.id}_`)).toBe(true);
      expect(created).toMatchObject({ name: 'render farm', scopes: ['jobs:read', 'jobs:write'], prefix: `cfk_${created.id}` });
      // default lifetime: 90 days
      const lifetimeDays = (Date.parse(created.expires_at) - Date.parse(created.created_at)) / 86_400_000;
      expect(lifetimeDays).toBeCloseTo(90, 3);

      // the signing secret: 32 bytes, base64url, and nothing to do with the key
      expect(created.signing_secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const secret = Buffer.from(created.signing_secret, 'base64url');
      expect(secret).toHaveLength(32);
      const keyBytes = Buffer.from(created.key.slice(-43), 'base64url');
      expect(secret.equals(keyBytes)).toBe(false);
      expect(secret.equals(createHmac('sha256', created.key).update('celforge request signing v1').digest())).toBe(false);
      expect(secret.equals(createHash('sha256').update(created.key).digest())).toBe(false);

      const row = await t.app.services.store.db.selectFrom('api_keys').selectAll().where('id', '=', created.id).executeTakeFirstOrThrow();
      expect(row.key_hash).toBe(sha256(created.key));
      expect(row.user_id).toBe(user.userId);
      expect(JSON.parse(row.scopes)).toEqual(['jobs:read', 'jobs:write']);
      expect(row.signing_secret).toMatch(/^v1\.k[A-Za-z0-9_-]+\./);
      // neither the key nor the signing secret is in the row in any usual encoding
      const clear = [
        created.key,
        created.key.slice(-43),
        keyBytes.toString('base64'),
        keyBytes.toString('hex'),
        created.signing_secret,
        secret.toString('base64'),
        secret.toString('hex'),
      ];
      const stored = JSON.stringify(row);
      for (const plain of clear) expect(stored).not.toContain(plain);
      expect(t.app.services.encryptor.decrypt(row.signing_secret!, created.id).equals(secret)).toBe(true);
      // the secret is bound to its key id: under another id it does not open
      expect(() => t.app.services.encryptor.decrypt(row.signing_secret!, '0'.repeat(24))).toThrow();
      // nor does the audit trail carry either
      const audited = JSON.stringify(record.mock.calls);
      expect(audited).toContain('auth.apikey.create');
      for (const plain of clear) expect(audited).not.toContain(plain);
      record.mockRestore();

      const list = await t.app.inject({ method: 'GET', url: '/api/auth/api-keys', headers: user.authorization });
      expect(list.statusCode).toBe(200);
      expect(list.body).not.toContain(created.key);
      expect(list.body).not.toContain(row.key_hash);
      expect(list.body).not.toContain('signing_secret');
      expect(list.body).not.toContain(created.signing_secret);
      expect(list.json().items).toEqual([
        {
          id: created.id,
          prefix: `cfk_${created.id}`,
          name: 'render farm',
          scopes: ['jobs:read', 'jobs:write'],
          created_at: created.created_at,
          expires_at: created.expires_at,
          last_used_at: null,
          expired: false,
        },
      ]);
    });

    it('seals signing secrets with the configured master key, else one the embedded mode keeps in the data dir (0600)', () => {
      const file = path.join(t.config.dataDir, 'secrets', 'encryption-key');
      if (t.config.secrets.encryptionKey) {
        // scale-out: the shared key is given; nothing is made locally
        expect(existsSync(file)).toBe(false);
        return;
      }
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(() => parseMasterKey(readFileSync(file, 'utf8'))).not.toThrow();
    });

    it('gives every key a signing secret of its own', async () => {
      const user = await signIn(t.app);
      const a = await createKey(t.app, user);
      const b = await createKey(t.app, user);
      expect(Buffer.from(a.signing_secret, 'base64url')).toHaveLength(32);
      expect(Buffer.from(b.signing_secret, 'base64url')).toHaveLength(32);
      expect(a.signing_secret).not.toBe(b.signing_secret);
    });

    it('describes the signing secret in the OpenAPI document, in the creation answer only', async () => {
      const res = await t.app.inject({ method: 'GET', url: '/api/anime/openapi.json' });
      const paths = res.json().paths;
      const created = paths['/api/auth/api-keys'].post.responses['201'].content['application/json'].schema;
      expect(created.required).toEqual(expect.arrayContaining(['key', 'signing_secret']));
      expect(created.properties.signing_secret).toMatchObject({ type: 'string', minLength: 43, maxLength: 43 });
      const listed = JSON.stringify(paths['/api/auth/api-keys'].get.responses);
      expect(listed).not.toContain('signing_secret');
    });

    it('refuses bad names, scopes, expiries and unknown fields', async () => {
      const user = await signIn(t.app);
      const post = (payload: unknown) =>
        t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: user.authorization, payload: payload as object });
      const inAYear = new Date(Date.now() + 366 * 86_400_000).toISOString();
      const cases: Array<[unknown, number, string]> = [
        [{ name: '', scopes: ['jobs:read'] }, 400, 'validation'],
        [{ name: 'x'.repeat(101), scopes: ['jobs:read'] }, 400, 'validation'],
        [{ name: '   ', scopes: ['jobs:read'] }, 400, 'invalid-name'],
        [{ name: 'a\u0000b', scopes: ['jobs:read'] }, 400, 'invalid-name'],
        [{ name: 'k', scopes: [] }, 400, 'validation'],
        [{ name: 'k', scopes: ['jobs:delete'] }, 400, 'validation'],
        [{ name: 'k', scopes: ['jobs:read', 'jobs:read'] }, 400, 'validation'],
        [{ name: 'k', scopes: 'jobs:read' }, 400, 'validation'],
        [{ name: 'k', scopes: ['jobs:read'], expires_at: '2001-01-01T00:00:00Z' }, 400, 'invalid-expiry'],
        [{ name: 'k', scopes: ['jobs:read'], expires_at: inAYear }, 400, 'invalid-expiry'],
        [{ name: 'k', scopes: ['jobs:read'], expires_at: 'tomorrow' }, 400, 'validation'],
        [{ name: 'k', scopes: ['jobs:read'], user_id: 'someone-else' }, 400, 'validation'],
        [{ name: 'k', scopes: ['admin'] }, 403, 'forbidden'],
      ];
      for (const [payload, status, slug] of cases) {
        const res = await post(payload);
        expect(res.statusCode, JSON.stringify(payload)).toBe(status);
        expect(res.json().type).toBe(`urn:celforge:problem:${slug}`);
      }
      const count = await t.app.services.store.db
        .selectFrom('api_keys')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('user_id', '=', user.userId)
        .executeTakeFirstOrThrow();
      expect(Number(count.n)).toBe(0);
    });

    it('stores a hostile name as text and returns it unchanged', async () => {
      const user = await signIn(t.app);
      const name = `'); drop table api_keys; -- <script>alert(1)</script>`;
      const key = await createKey(t.app, user, { name, scopes: ['jobs:read'] });
      expect(key.name).toBe(name);
      const list = await t.app.inject({ method: 'GET', url: '/api/auth/api-keys', headers: user.authorization });
      expect(list.json().items[0].name).toBe(name);
    });

    it('lets an admin grant the admin scope, and accepts an explicit expiry', async () => {
      const admin = await signIn(t.app, { role: 'admin' });
      const expires = new Date(Date.now() + 7 * 86_400_000).toISOString();
      const key = await createKey(t.app, admin, { name: 'ops', scopes: ['admin'], expires_at: expires });
      expect(key.expires_at).toBe(expires);
      const res = await t.app.inject({ method: 'GET', url: '/test/admin', headers: apiKeyHeader(key.key) });
      expect(res.statusCode).toBe(200);
    });

    it('an API key cannot mint API keys', async () => {
      const user = await signIn(t.app);
      const key = await createKey(t.app, user, { name: 'k', scopes: ['jobs:read', 'jobs:write'] });
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/auth/api-keys',
        headers: apiKeyHeader(key.key),
        payload: { name: 'child', scopes: ['jobs:read'] },
      });
      expect(res.statusCode).toBe(401);
      expect(res.json().type).toBe('urn:celforge:problem:api-key-not-accepted');
    });

    it('caps the live keys per user', async () => {
      const user = await signIn(t.app);
      for (let i = 0; i < 25; i++) await createKey(t.app, user, { name: `k${i}`, scopes: ['jobs:read'] });
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/auth/api-keys',
        headers: user.authorization,
        payload: { name: 'one too many', scopes: ['jobs:read'] },
      });
      expect(res.statusCode).toBe(409);
      expect(res.json().type).toBe('urn:celforge:problem:too-many-api-keys');
    });

    it('keeps the cap exact under 30 concurrent creates: 25 keys, 5 problem answers', async () => {
      const user = await signIn(t.app);
      const other = await signIn(t.app);
      const record = vi.spyOn(t.app.services.audit, 'record');
      const post = (who: typeof user, i: number) =>
        t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: who.authorization, payload: { name: `burst ${i}`, scopes: ['jobs:read'] } });
      // another user's creates run alongside and are not held to this user's cap
      const [answers, others] = await Promise.all([
        Promise.all(Array.from({ length: 30 }, (_, i) => post(user, i))),
        Promise.all(Array.from({ length: 3 }, (_, i) => post(other, i))),
      ]);
      const created = answers.filter((res) => res.statusCode === 201);
      const refused = answers.filter((res) => res.statusCode !== 201);
      expect(created).toHaveLength(25);
      expect(refused).toHaveLength(5);
      for (const res of refused) {
        expect(res.statusCode).toBe(409);
        expect(res.headers['content-type']).toContain('application/problem+json');
        expect(res.json()).toMatchObject({ type: 'urn:celforge:problem:too-many-api-keys', status: 409 });
      }
      expect(others.map((res) => res.statusCode)).toEqual([201, 201, 201]);

      const { db } = t.app.services.store;
      const rows = await db.selectFrom('api_keys').select(['id', 'revoked_at']).where('user_id', '=', user.userId).execute();
      expect(rows).toHaveLength(25);
      expect(rows.every((row) => row.revoked_at === null)).toBe(true);
      expect(new Set(rows.map((row) => row.id))).toEqual(new Set(created.map((res) => res.json().id as string)));
      const audited = record.mock.calls.filter(([event]) => event.action === 'auth.apikey.create' && event.actorId === user.userId);
      expect(audited).toHaveLength(25);
      record.mockRestore();
      // every key that was answered works
      for (const res of created.slice(0, 3)) {
        expect((await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(res.json().key) })).statusCode).toBe(200);
      }
      // after a revoke there is room for exactly one more
      expect((await t.app.inject({ method: 'DELETE', url: `/api/auth/api-keys/${rows[0]!.id}`, headers: user.authorization })).statusCode).toBe(204);
      const again = await Promise.all([post(user, 30), post(user, 31)]);
      expect(again.map((res) => res.statusCode).sort()).toEqual([201, 409]);
    });
  });

  describe('authentication', () => {
    it('works with Authorization: ApiKey and with X-API-Key, and records the last use', async () => {
      const user = await signIn(t.app);
      const key = await createKey(t.app, user);
      for (const headers of [apiKeyHeader(key.key), { authorization: `apikey ${key.key}` }, { 'x-api-key': key.key }]) {
        const res = await t.app.inject({ method: 'GET', url: '/test/whoami', headers });
        expect(res.statusCode).toBe(200);
        expect(res.json()).toMatchObject({
          userId: user.userId,
          email: user.email,
          role: 'user',
          via: 'api-key',
          sessionId: null,
          scopes: ['jobs:read'],
          apiKeyId: key.id,
        });
      }
      let lastUsed: string | null = null;
      for (let i = 0; i < 100 && lastUsed === null; i++) {
        const row = await t.app.services.store.db.selectFrom('api_keys').select('last_used_at').where('id', '=', key.id).executeTakeFirstOrThrow();
        lastUsed = row.last_used_at;
        if (lastUsed === null) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(lastUsed).not.toBeNull();
      const list = await t.app.inject({ method: 'GET', url: '/api/auth/api-keys', headers: user.authorization });
      expect(list.json().items[0].last_used_at).toBe(lastUsed);
    });

    it('refuses wrong, unknown, malformed, expired and doubled keys with one answer, and audits them', async () => {
      const user = await signIn(t.app);
      const key = await createKey(t.app, user);
      const record = vi.spyOn(t.app.services.audit, 'record');
      const secretPart = key.key.slice(-43);
      const flipped = secretPart[0] === 'A' ? `B${secretPart.slice(1)}` : `A${secretPart.slice(1)}`;
      const wrongSecret = `cfk_${key.id}_${flipped}`;
      const unknownId = `cfk_${'0'.repeat(24)}_${secretPart}`;
      for (const value of [wrongSecret, unknownId, 'cfk_short', key.key.slice(0, -1)]) {
        const res = await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(value) });
        expect(res.statusCode, value).toBe(401);
        expect(res.json()).toMatchObject({ type: 'urn:celforge:problem:unauthorized', detail: 'The API key is invalid, expired or revoked.' });
        expect(res.body).not.toContain(key.id);
      }
      const refusals = record.mock.calls.filter(([event]) => event.action === 'auth.apikey.use');
      expect(refusals.map(([event]) => event.detail?.reason)).toEqual(['unknown', 'unknown', 'malformed', 'malformed']);
      record.mockRestore();

      const both = await t.app.inject({ method: 'GET', url: '/test/whoami', headers: { ...user.authorization, 'x-api-key': key.key } });
      expect(both.statusCode).toBe(401);

      const stale = await createKey(t.app, user);
      await t.app.services.store.db
        .updateTable('api_keys')
        .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
        .where('id', '=', stale.id)
        .execute();
      const expired = await t.app.inject({ method: 'GET', url: '/test/whoami', headers: { 'x-api-key': stale.key } });
      expect(expired.statusCode).toBe(401);
      const list = await t.app.inject({ method: 'GET', url: '/api/auth/api-keys', headers: user.authorization });
      expect(list.json().items.find((k: { id: string }) => k.id === stale.id).expired).toBe(true);
    });

    it('checks expiry on every request, also for a cached key', async () => {
      const user = await signIn(t.app);
      const key = await createKey(t.app, user, { name: 'short', scopes: ['jobs:read'], expires_at: new Date(Date.now() + 3_600_000).toISOString() });
      expect((await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(key.key) })).statusCode).toBe(200);
      const later = Date.now() + 3_600_001;
      const clock = vi.spyOn(Date, 'now').mockReturnValue(later);
      try {
        expect((await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(key.key) })).statusCode).toBe(401);
      } finally {
        clock.mockRestore();
      }
    });

    it('checks scopes: a missing scope is 403', async () => {
      const user = await signIn(t.app);
      const writer = await createKey(t.app, user, { name: 'w', scopes: ['jobs:write'] });
      const res = await t.app.inject({ method: 'GET', url: '/test/jobs', headers: apiKeyHeader(writer.key) });
      expect(res.statusCode).toBe(403);
      expect(res.json().type).toBe('urn:celforge:problem:insufficient-scope');
      const reader = await createKey(t.app, user, { name: 'r', scopes: ['jobs:read'] });
      expect((await t.app.inject({ method: 'GET', url: '/test/jobs', headers: apiKeyHeader(reader.key) })).statusCode).toBe(200);
      // the same route with a session token: the role decides, not scopes
      expect((await t.app.inject({ method: 'GET', url: '/test/jobs', headers: user.authorization })).statusCode).toBe(200);
    });

    it('an admin route needs the admin scope on an admin’s key, whatever scope it names', async () => {
      const admin = await signIn(t.app, { role: 'admin' });
      const reader = await createKey(t.app, admin, { name: 'r', scopes: ['jobs:read'] });
      const res = await t.app.inject({ method: 'GET', url: '/test/admin-jobs', headers: apiKeyHeader(reader.key) });
      expect(res.statusCode).toBe(403);
      expect(res.json().type).toBe('urn:celforge:problem:insufficient-scope');
      const ops = await createKey(t.app, admin, { name: 'ops', scopes: ['admin', 'jobs:read'] });
      expect((await t.app.inject({ method: 'GET', url: '/test/admin-jobs', headers: apiKeyHeader(ops.key) })).statusCode).toBe(200);
      expect((await t.app.inject({ method: 'GET', url: '/test/admin-jobs', headers: admin.authorization })).statusCode).toBe(200);
    });

    it('a demoted admin keeps no admin scope; a disabled user is refused at once', async () => {
      const admin = await signIn(t.app, { role: 'admin' });
      const key = await createKey(t.app, admin, { name: 'ops', scopes: ['admin', 'jobs:read'] });
      expect((await t.app.inject({ method: 'GET', url: '/test/admin', headers: apiKeyHeader(key.key) })).statusCode).toBe(200);

      const { db } = t.app.services.store;
      await db.updateTable('users').set({ role: 'user' }).where('id', '=', admin.userId).execute();
      await t.app.services.apiKeys.evictUserKeys(admin.userId);
      const who = await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(key.key) });
      expect(who.json()).toMatchObject({ role: 'user', scopes: ['jobs:read'] });
      expect((await t.app.inject({ method: 'GET', url: '/test/admin', headers: apiKeyHeader(key.key) })).statusCode).toBe(403);

      await db.updateTable('users').set({ disabled: 1 }).where('id', '=', admin.userId).execute();
      await t.app.services.apiKeys.evictUserKeys(admin.userId);
      expect((await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(key.key) })).statusCode).toBe(401);
    });
  });

  describe('listing and revocation', () => {
    it('lists only the caller’s own keys', async () => {
      const alice = await signIn(t.app);
      const bob = await signIn(t.app);
      const a = await createKey(t.app, alice, { name: 'alice key', scopes: ['jobs:read'] });
      await createKey(t.app, bob, { name: 'bob key', scopes: ['jobs:read'] });
      const list = await t.app.inject({ method: 'GET', url: '/api/auth/api-keys', headers: alice.authorization });
      expect(list.json().items.map((k: { id: string }) => k.id)).toEqual([a.id]);
    });

    it('revoke is effective on the very next request', async () => {
      const user = await signIn(t.app);
      const key = await createKey(t.app, user);
      // warm the cache
      for (let i = 0; i < 3; i++) {
        expect((await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(key.key) })).statusCode).toBe(200);
      }
      const del = await t.app.inject({ method: 'DELETE', url: `/api/auth/api-keys/${key.id}`, headers: user.authorization });
      expect(del.statusCode).toBe(204);
      const after = await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(key.key) });
      expect(after.statusCode).toBe(401);
      const row = await t.app.services.store.db.selectFrom('api_keys').select('revoked_at').where('id', '=', key.id).executeTakeFirstOrThrow();
      expect(row.revoked_at).not.toBeNull();
      const list = await t.app.inject({ method: 'GET', url: '/api/auth/api-keys', headers: user.authorization });
      expect(list.json().items).toEqual([]);
      // revoking twice: there is no such live key
      const again = await t.app.inject({ method: 'DELETE', url: `/api/auth/api-keys/${key.id}`, headers: user.authorization });
      expect(again.statusCode).toBe(404);
    });

    it('another user’s key id, an unknown id or a malformed id is 404, and nothing is revoked', async () => {
      const alice = await signIn(t.app);
      const mallory = await signIn(t.app);
      const key = await createKey(t.app, alice);
      for (const id of [key.id, '0'.repeat(24), "1' or '1'='1", 'x'.repeat(64)]) {
        const res = await t.app.inject({ method: 'DELETE', url: `/api/auth/api-keys/${encodeURIComponent(id)}`, headers: mallory.authorization });
        expect(res.statusCode, id).toBe(404);
        expect(res.json().type).toBe('urn:celforge:problem:not-found');
      }
      expect((await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(key.key) })).statusCode).toBe(200);
    });
  });
});
