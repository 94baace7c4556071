import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { testConfig } from '../../src/config/config.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';
import { removeRedisKeys } from '../support/redis.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { signIn } from '../support/users.js';

const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

// One instance reaches Redis through a proxy that the test cuts; the other reaches it directly.
describeEachDialect('revocations across a Redis reconnect', (dialect) => {
  const prefix = `celforge-test-${randomBytes(6).toString('hex')}:`;
  let storage: TestStorage;
  let proxy: TcpProxy;
  let cut: FastifyInstance;
  let other: FastifyInstance;

  beforeAll(async () => {
    storage = await createTestStorage(dialect);
    proxy = await startTcpProxy('127.0.0.1', Number(new URL(REDIS_URL).port || 6379));
    const config = { dataDir: storage.dataDir, databaseUrl: storage.databaseUrl, redisPrefix: prefix };
    cut = await buildApp(testConfig({ ...config, redisUrl: proxy.url(REDIS_URL) }), { worker: false });
    other = await buildApp(testConfig({ ...config, redisUrl: REDIS_URL }), { worker: false });
  });
  afterAll(async () => {
    proxy?.restore();
    await cut?.close();
    await other?.close();
    await proxy?.close();
    await removeRedisKeys(REDIS_URL, prefix);
    await storage?.drop();
  });

  const ready = async (app: FastifyInstance) => {
    const res = await app.inject({ method: 'GET', url: '/api/anime/ready' });
    return { status: res.statusCode, failed: (res.json() as { failed?: string[] }).failed ?? [] };
  };
  const me = async (app: FastifyInstance, authorization: string) => (await app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization } })).statusCode;

  it('while the subscription is down the instance is not ready and refuses session tokens; back, it has missed nothing', { timeout: 30_000 }, async () => {
    const user = await signIn(other);
    expect(await ready(cut)).toEqual({ status: 200, failed: [] });
    expect(await me(cut, user.authorization.authorization)).toBe(200);

    proxy.cut();
    await expect.poll(() => ready(cut), { timeout: 5_000, interval: 200 }).toEqual({ status: 503, failed: ['dependencies'] });
    expect(await me(cut, user.authorization.authorization)).toBe(503);
    // a logout it cannot hear of: only the store has it
    expect((await other.inject({ method: 'POST', url: '/api/auth/logout', headers: user.authorization })).statusCode).toBe(204);

    proxy.restore();
    await expect.poll(() => ready(cut), { timeout: 15_000, interval: 200 }).toEqual({ status: 200, failed: [] });
    // resynced from the store on reconnect
    expect(await me(cut, user.authorization.authorization)).toBe(401);

    // and subscribed again: a change published now arrives
    const second = await signIn(other);
    expect(await me(cut, second.authorization.authorization)).toBe(200);
    expect((await other.inject({ method: 'POST', url: '/api/auth/logout', headers: second.authorization })).statusCode).toBe(204);
    await expect.poll(() => me(cut, second.authorization.authorization), { timeout: 2_000, interval: 20 }).toBe(401);
  });
});
