import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { testConfig } from '../../src/config/config.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';
import { registerAndLogin, TEST_PASSWORD } from '../support/users.js';

const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describeEachDialect('identity with Redis: two API instances share revocations and throttling', (dialect) => {
  let storage: TestStorage;
  let a: FastifyInstance;
  let b: FastifyInstance;
  const prefix = `celforge-test-${randomBytes(6).toString('hex')}:`;

  beforeAll(async () => {
    storage = await createTestStorage(dialect);
    const config = testConfig({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl, redisUrl: REDIS_URL, redisPrefix: prefix });
    a = await buildApp(config);
    b = await buildApp(config);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await storage?.drop();
  });

  const me = (app: FastifyInstance, authorization: string) => app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization } });

  it('a logout at one instance is refused at the other (pub/sub, no store read per request)', async () => {
    const user = await registerAndLogin(a);
    expect((await me(b, user.authorization.authorization)).statusCode).toBe(200);
    expect((await a.inject({ method: 'POST', url: '/api/auth/logout', headers: user.authorization })).statusCode).toBe(204);
    expect((await me(a, user.authorization.authorization)).statusCode).toBe(401);
    // pub/sub delivery between processes takes a moment; poll briefly rather than sleep
    await expect.poll(async () => (await me(b, user.authorization.authorization)).statusCode, { timeout: 2_000, interval: 20 }).toBe(401);
  });

  it('disabling a user at one instance is refused at the other; a restarted instance still knows', async () => {
    const admin = await registerAndLogin(a, { role: 'admin' });
    const user = await registerAndLogin(a);
    await a.services.identity.updateUser(user.userId, { disabled: true }, { id: admin.userId });
    await expect.poll(async () => (await me(b, user.authorization.authorization)).statusCode, { timeout: 2_000, interval: 20 }).toBe(401);
    const config = testConfig({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl, redisUrl: REDIS_URL, redisPrefix: prefix });
    const c = await buildApp(config);
    try {
      expect((await me(c, user.authorization.authorization)).statusCode).toBe(401);
      expect((await me(c, admin.authorization.authorization)).statusCode).toBe(200);
    } finally {
      await c.close();
    }
  });

  it('login throttling is shared: a burst from one address split over both instances is throttled', async () => {
    const user = await registerAndLogin(a);
    const attempts = [...Array.from({ length: 30 }, (_, i) => `nope nope nope ${i}`), TEST_PASSWORD];
    const results = await Promise.all(
      attempts.map((password, i) =>
        (i % 2 ? a : b).inject({ method: 'POST', url: '/api/auth/login', payload: { email: user.email, password }, remoteAddress: '10.30.0.1' }),
      ),
    );
    const burst = results.slice(0, 30);
    expect(burst.filter((r) => r.statusCode === 429).length).toBeGreaterThanOrEqual(20);
    expect(burst.filter((r) => r.statusCode === 200)).toHaveLength(0);
    const limited = burst.find((r) => r.statusCode === 429)!;
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
  });
});
