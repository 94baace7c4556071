import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { testConfig, type Config } from '../../src/config/config.js';
import { signedHeaders } from '../../src/identity/client-signing.js';
import { runCli } from '../support/cli.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';
import { signIn } from '../support/users.js';
import { apiKeyHeader, createKey, testRoutes } from './api-keys-support.js';

const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describeEachDialect('API keys on two instances sharing Redis', (dialect) => {
  let a: FastifyInstance;
  let b: FastifyInstance;
  let config: Config;
  let drop: () => Promise<void>;
  let storage: TestStorage;
  const prefix = `celforge-test-${randomBytes(6).toString('hex')}:`;

  beforeAll(async () => {
    storage = await createTestStorage(dialect);
    drop = storage.drop;
    config = testConfig({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl, redisUrl: REDIS_URL, redisPrefix: prefix });
    a = await buildApp(config, { extraRoutes: testRoutes });
    b = await buildApp(config, { extraRoutes: testRoutes });
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    await drop?.();
  });

  async function whoami(app: FastifyInstance, key: string) {
    return (await app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(key) })).statusCode;
  }

  it('a key revoked on instance A is refused by instance B on the next request', async () => {
    const user = await signIn(a);
    const key = await createKey(a, user);
    // both instances hold the row in their caches
    for (let i = 0; i < 3; i++) {
      expect(await whoami(a, key.key)).toBe(200);
      expect(await whoami(b, key.key)).toBe(200);
    }
    const del = await a.inject({ method: 'DELETE', url: `/api/auth/api-keys/${key.id}`, headers: user.authorization });
    expect(del.statusCode).toBe(204);
    expect(await whoami(b, key.key)).toBe(401);
    expect(await whoami(a, key.key)).toBe(401);
  });

  it('a disabled user’s keys stop on every instance once evicted', async () => {
    const user = await signIn(a);
    const key = await createKey(a, user);
    expect(await whoami(b, key.key)).toBe(200);
    await a.services.store.db.updateTable('users').set({ disabled: 1 }).where('id', '=', user.userId).execute();
    await a.services.apiKeys.evictUserKeys(user.userId);
    expect(await whoami(b, key.key)).toBe(401);
  });

  it('disabling or demoting on instance A stops the keys on instance B before A answers', async () => {
    const operator = await signIn(a, { role: 'admin' });
    const owner = await signIn(a, { role: 'admin' });
    const reader = await createKey(a, owner);
    const ops = await createKey(a, owner, { name: 'ops', scopes: ['admin'] });
    const stats = () => b.inject({ method: 'GET', url: '/api/anime/admin/stats', headers: apiKeyHeader(ops.key) });
    expect((await stats()).statusCode).toBe(200);
    expect(await whoami(b, reader.key)).toBe(200);
    const patch = (payload: object) => a.inject({ method: 'PATCH', url: `/api/auth/users/${owner.userId}`, headers: operator.authorization, payload });
    expect((await patch({ role: 'user' })).statusCode).toBe(200);
    expect((await stats()).statusCode).toBe(403);
    expect(await whoami(b, reader.key)).toBe(200);
    expect((await patch({ disabled: true })).statusCode).toBe(200);
    expect(await whoami(b, reader.key)).toBe(401);
  });

  it('a password change or "sign out everywhere" on A reaches B\'s key cache at once', async () => {
    const owner = await signIn(a);
    const key = await createKey(a, owner);
    expect(await whoami(b, key.key)).toBe(200);
    // a change B cannot know of (a row edited behind its back) shows after the eviction that "sign out everywhere" sends
    await a.services.store.db.updateTable('users').set({ disabled: 1 }).where('id', '=', owner.userId).execute();
    expect(await whoami(b, key.key)).toBe(200); // B still serves its cached row
    const signOut = await a.inject({ method: 'DELETE', url: '/api/auth/sessions', headers: owner.authorization });
    expect(signOut.statusCode).toBe(200);
    expect(await whoami(b, key.key)).toBe(401);
  });

  it('`celforge user disable` in another process stops the keys on both instances before it exits', async () => {
    const owner = await signIn(a);
    const key = await createKey(a, owner);
    expect(await whoami(a, key.key)).toBe(200);
    expect(await whoami(b, key.key)).toBe(200);
    const disabled = await runCli(['user', 'disable', '--email', owner.email], storage, { env: { REDIS_URL, CELFORGE_REDIS_PREFIX: prefix } });
    expect(disabled.code, disabled.stderr).toBe(0);
    expect(await whoami(a, key.key)).toBe(401);
    expect(await whoami(b, key.key)).toBe(401);
  }, 60_000);

  it('a signature used on instance A is a replay on instance B', async () => {
    const user = await signIn(a);
    const key = await createKey(a, user);
    const body = '{"n":1}';
    const headers = {
      ...apiKeyHeader(key.key),
      'content-type': 'application/json',
      ...signedHeaders({ method: 'POST', url: `${config.publicUrl}/test/critical/x`, body, apiKey: key.key, signingSecret: key.signing_secret }),
    };
    const first = await a.inject({ method: 'POST', url: '/test/critical/x', headers, payload: body });
    expect(first.statusCode, first.body).toBe(200);
    const replay = await b.inject({ method: 'POST', url: '/test/critical/x', headers, payload: body });
    expect(replay.statusCode).toBe(401);
    expect(replay.json()).toMatchObject({ type: 'urn:celforge:problem:signature-invalid', reason: 'replayed' });
    // the replay guard's entries live under this deployment's prefix
    const redis = new Redis(REDIS_URL);
    expect((await redis.keys(`${prefix}httpsig:*`)).length).toBeGreaterThan(0);
    redis.disconnect();
  });
});
