import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, expect, it, vi } from 'vitest';
import { buildApp } from '../../src/app.js';
import { DEFAULT_LIMITS, parseRateLimits, type Config } from '../../src/config/config.js';
import { createKey } from '../identity/api-keys-support.js';
import { signIn, useTestApp } from '../support/app.js';
import { registerAndLogin } from '../support/users.js';
import { describeEachDialect, type DialectName } from '../support/dialects.js';
import { limitTestRoutes, parseRateField } from './routes.js';

const REDIS_URL = 'redis://127.0.0.1:6379';

const limits = {
  ...DEFAULT_LIMITS,
  rates: parseRateLimits('read=5/60s,anonymous=3/60s,signin-ip=4/60s,signin-account=2/15m,generation=10/60s'),
  activeJobs: 1000,
  jobsPerDay: 1000,
};

/** Has the shape of a token, so each one costs a signature verification. */
const forgedToken = () => `eyJhbGciOiJFZERTQSJ9.${randomBytes(24).toString('base64url')}.${randomBytes(64).toString('base64url')}`;

type Response = Awaited<ReturnType<FastifyInstance['inject']>>;

function expectRateLimited(response: Response, policy: string, quota: number, window: number, remaining = 0) {
  expect(response.statusCode).toBe(429);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(response.json()).toMatchObject({ type: 'urn:celforge:problem:rate-limited', status: 429, policy });
  const retryAfter = Number(response.headers['retry-after']);
  expect(Number.isInteger(retryAfter)).toBe(true);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(window);
  expect(parseRateField(response.headers['ratelimit-policy'])[policy]).toEqual({ q: quota, w: window });
  const state = parseRateField(response.headers.ratelimit)[policy]!;
  expect(state.r).toBe(remaining);
  expect(state.t).toBeGreaterThanOrEqual(1);
  expect(state.t).toBeLessThanOrEqual(window);
}

function rateLimitSuite(dialect: DialectName, store: 'memory' | 'redis') {
  const prefix = `celforge-test:${randomBytes(6).toString('hex')}:`;
  const overrides: Partial<Config> = { limits, ...(store === 'redis' && { redisUrl: REDIS_URL, redisPrefix: prefix }) };
  const t = useTestApp(dialect, overrides, { extraRoutes: limitTestRoutes });

  afterAll(async () => {
    if (store !== 'redis') return;
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  const read = (authorization: Record<string, string>) => t.app.inject({ url: '/api/anime/_test/read', headers: authorization });

  it('counts reads down in RateLimit, then answers 429 with Retry-After', async () => {
    const user = await signIn(t.app);
    for (let used = 1; used <= 5; used++) {
      const response = await read(user.authorization);
      expect(response.statusCode).toBe(200);
      expect(response.headers['ratelimit-policy']).toBe('"read";q=5;w=60');
      expect(response.headers.ratelimit).toMatch(new RegExp(`^"read";r=${5 - used};t=\\d+$`));
    }
    expectRateLimited(await read(user.authorization), 'read', 5, 60);
  });

  it("one user's burst leaves another user's budget intact", async () => {
    const a = await signIn(t.app);
    const b = await signIn(t.app);
    for (let i = 0; i < 7; i++) await read(a.authorization);
    expect((await read(a.authorization)).statusCode).toBe(429);
    const other = await read(b.authorization);
    expect(other.statusCode).toBe(200);
    expect(other.json()).toEqual({ user: b.userId });
    expect(parseRateField(other.headers.ratelimit).read!.r).toBe(4);
  });

  it('anonymous callers are limited per client address', async () => {
    const from = (remoteAddress: string) => t.app.inject({ url: '/api/anime/_test/whoami', remoteAddress });
    for (let i = 0; i < 3; i++) expect((await from('192.0.2.10')).statusCode).toBe(200);
    expectRateLimited(await from('192.0.2.10'), 'anonymous', 3, 60);
    const neighbour = await from('192.0.2.11');
    expect(neighbour.statusCode).toBe(200);
    expect(parseRateField(neighbour.headers.ratelimit).anonymous!.r).toBe(2);
  });

  it('a video costs more of the generation budget than an image', async () => {
    const user = await signIn(t.app);
    const generate = (type: string) =>
      t.app.inject({ method: 'POST', url: '/api/anime/_test/generate', headers: user.authorization, payload: { prompt: "it's -- a test", type } });
    const image = await generate('image');
    expect(image.statusCode).toBe(202);
    expect(parseRateField(image.headers.ratelimit).generation!.r).toBe(9);
    const video = await generate('video');
    expect(video.statusCode).toBe(202);
    expect(parseRateField(video.headers.ratelimit).generation!.r).toBe(4);
    // a second video (5) does not fit in the 4 left; it is refused and not charged
    expectRateLimited(await generate('video'), 'generation', 10, 60, 4);
    const images = await Promise.all([generate('image'), generate('image'), generate('image'), generate('image')]);
    expect(images.map((r) => r.statusCode)).toEqual([202, 202, 202, 202]);
    expectRateLimited(await generate('image'), 'generation', 10, 60);
    const jobs = await t.app.services.store.db.selectFrom('jobs').select('type').where('user_id', '=', user.userId).execute();
    expect(jobs.map((j) => j.type).sort()).toEqual(['image', 'image', 'image', 'image', 'image', 'video']);
  });

  it('malformed generation bodies are charged too', async () => {
    const user = await signIn(t.app);
    const bad = await t.app.inject({ method: 'POST', url: '/api/anime/_test/generate', headers: user.authorization, payload: { type: 'video', prompt: '' } });
    expect(bad.statusCode).toBe(400);
    expect(parseRateField(bad.headers.ratelimit).generation!.r).toBe(5);
  });

  it('sign-in is limited per (account, address) and per address across accounts — never per account alone', async () => {
    const login = (email: string, remoteAddress: string) =>
      t.app.inject({ method: 'POST', url: '/api/anime/_test/login', remoteAddress, payload: { email, password: 'wrong-password-123' } });
    const victim = `victim-${randomBytes(3).toString('hex')}@example.test`;
    expect((await login(victim, '198.51.100.1')).statusCode).toBe(401);
    const second = await login(victim.toUpperCase(), '198.51.100.1');
    expect(second.statusCode).toBe(401);
    expect(parseRateField(second.headers['ratelimit-policy'])).toEqual({
      'signin-ip': { q: 4, w: 60 },
      'signin-account': { q: 2, w: 900 },
    });
    const third = await login(` ${victim} `, '198.51.100.1');
    expectRateLimited(third, 'signin-account', 2, 900);
    expect(parseRateField(third.headers.ratelimit)['signin-ip']!.r).toBe(1);
    // the same account from other addresses is not refused: a stranger cannot lock it out
    for (let i = 2; i < 8; i++) expect((await login(victim, `198.51.100.${i}`)).statusCode).toBe(401);

    for (let i = 0; i < 4; i++) expect((await login(`spray-${i}@example.test`, '198.51.100.9')).statusCode).toBe(401);
    expectRateLimited(await login('spray-5@example.test', '198.51.100.9'), 'signin-ip', 4, 60);
  });

  const bogusKey = () => `cfk_${randomBytes(12).toString('hex')}_${randomBytes(32).toString('base64url')}`;
  const rejections = async (ip: string) => {
    await t.app.services.audit.flush();
    const rows = await t.app.services.store.db
      .selectFrom('audit_log')
      .select(['actor_id', 'detail'])
      .where('action', '=', 'ratelimit.reject')
      .where('ip', '=', ip)
      .execute();
    return rows.map((row) => ({ actor_id: row.actor_id, ...(JSON.parse(row.detail!) as object) }));
  };

  it('forged bearer tokens count against the anonymous budget of their address, then get 429 unverified', async () => {
    const ip = '203.0.113.20';
    const me = (authorization: string, remoteAddress = ip) =>
      t.app.inject({ url: '/api/anime/_test/read', remoteAddress, headers: { authorization } });
    for (let left = 2; left >= 0; left--) {
      const refused = await me(`Bearer ${forgedToken()}`);
      expect(refused.statusCode).toBe(401);
      expect(refused.headers['www-authenticate']).toMatch(/error="invalid_token"/);
      expect(parseRateField(refused.headers.ratelimit).anonymous!.r).toBe(left);
    }
    const verify = vi.spyOn(t.app.services.verifier, 'verify');
    try {
      for (let i = 0; i < 3; i++) expectRateLimited(await me(`Bearer ${forgedToken()}`), 'anonymous', 3, 60);
      expect(verify).not.toHaveBeenCalled();
    } finally {
      verify.mockRestore();
    }
    // a missing or malformed credential is an anonymous request of that address too
    expectRateLimited(await t.app.inject({ url: '/api/anime/_test/read', remoteAddress: ip }), 'anonymous', 3, 60);
    expectRateLimited(await me('Basic abc'), 'anonymous', 3, 60);

    const neighbour = await me(`Bearer ${forgedToken()}`, '203.0.113.21');
    expect(neighbour.statusCode).toBe(401);
    expect(parseRateField(neighbour.headers.ratelimit).anonymous!.r).toBe(2);

    const audited = await rejections(ip);
    expect(audited).toHaveLength(5);
    for (const row of audited) expect(row).toEqual({ actor_id: null, policy: 'anonymous', route: '/api/anime/_test/read' });
    expect((await t.app.services.metrics.render()).body).toMatch(/celforge_rate_limit_rejections_total\{policy="anonymous"\} [1-9]/);
  });

  it('bogus API keys count against the anonymous budget of their address, then get 429 unlooked-up', async () => {
    const ip = '203.0.113.30';
    const call = (headers: Record<string, string>, remoteAddress = ip) => t.app.inject({ url: '/api/anime/_test/read', remoteAddress, headers });
    for (let i = 0; i < 3; i++) {
      const headers: Record<string, string> = i % 2 === 0 ? { 'x-api-key': bogusKey() } : { authorization: `ApiKey ${bogusKey()}` };
      expect((await call(headers)).statusCode).toBe(401);
    }
    const lookup = vi.spyOn(t.app.services.apiKeys, 'authenticate');
    try {
      expectRateLimited(await call({ 'x-api-key': bogusKey() }), 'anonymous', 3, 60);
      expectRateLimited(await call({ authorization: `ApiKey ${bogusKey()}` }), 'anonymous', 3, 60);
      expect(lookup).not.toHaveBeenCalled();
    } finally {
      lookup.mockRestore();
    }
    expect((await call({ 'x-api-key': bogusKey() }, '203.0.113.31')).statusCode).toBe(401);
    expect(await rejections(ip)).toHaveLength(2);
  });

  it('credentials already known good (used before, or issued here at sign-in) still work from a flooded address; a token not yet seen waits', async () => {
    const ip = '203.0.113.40';
    const user = await signIn(t.app);
    const key = await createKey(t.app, user, { name: 'nat', scopes: ['jobs:read'] });
    const read = (headers: Record<string, string>) => t.app.inject({ url: '/api/anime/_test/read', remoteAddress: ip, headers });
    // used once: the token is now in the verifier's cache, the key's row in the key cache
    expect((await read(user.authorization)).statusCode).toBe(200);
    expect((await read({ 'x-api-key': key.key })).statusCode).toBe(200);

    for (let i = 0; i < 3; i++) expect((await read({ authorization: `Bearer ${forgedToken()}` })).statusCode).toBe(401);
    expectRateLimited(await read({ authorization: `Bearer ${forgedToken()}` }), 'anonymous', 3, 60);

    const ok = await read(user.authorization);
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ user: user.userId });
    expect(parseRateField(ok.headers.ratelimit).read!.r).toBe(2);
    expect((await read({ 'x-api-key': key.key })).statusCode).toBe(200);

    const fresh = await signIn(t.app);
    expectRateLimited(await read(fresh.authorization), 'anonymous', 3, 60);
    expect((await t.app.inject({ url: '/api/anime/_test/read', remoteAddress: '203.0.113.41', headers: fresh.authorization })).statusCode).toBe(200);

    // a token this instance issued at sign-in is known good from its first use
    const loggedIn = await registerAndLogin(t.app, { remoteAddress: ip });
    const first = await read(loggedIn.authorization);
    expect(first.statusCode).toBe(200);
    expect(first.json()).toEqual({ user: loggedIn.userId });
  });

  if (store === 'redis') {
    it('two API instances on one Redis share one budget', async () => {
      const other = await buildApp(t.config, { extraRoutes: limitTestRoutes });
      try {
        const user = await signIn(t.app);
        for (let i = 0; i < 5; i++) {
          const app = i % 2 === 0 ? t.app : other;
          expect((await app.inject({ url: '/api/anime/_test/read', headers: user.authorization })).statusCode).toBe(200);
        }
        expectRateLimited(await other.inject({ url: '/api/anime/_test/read', headers: user.authorization }), 'read', 5, 60);
        expectRateLimited(await read(user.authorization), 'read', 5, 60);
        const redis = new Redis(REDIS_URL, { keyPrefix: prefix });
        expect(await redis.get(`rl:read:u:${user.userId}`)).toBe('5');
        redis.disconnect();
      } finally {
        await other.close();
      }
    });

    it('an address that spent its budget on one instance is refused on the other too', async () => {
      const other = await buildApp(t.config, { extraRoutes: limitTestRoutes });
      try {
        const forgedFrom = (app: FastifyInstance) =>
          app.inject({ url: '/api/anime/_test/read', remoteAddress: '203.0.113.50', headers: { authorization: `Bearer ${forgedToken()}` } });
        for (let i = 0; i < 3; i++) expect((await forgedFrom(t.app)).statusCode).toBe(401);
        // the other instance has not seen the window spent: it verifies once, its charge is refused
        expectRateLimited(await forgedFrom(other), 'anonymous', 3, 60);
        const verify = vi.spyOn(other.services.verifier, 'verify');
        expectRateLimited(await forgedFrom(other), 'anonymous', 3, 60);
        expect(verify).not.toHaveBeenCalled();
      } finally {
        await other.close();
      }
    });
  }
}

describeEachDialect('rate limits, memory store', (dialect) => rateLimitSuite(dialect, 'memory'));
describeEachDialect('rate limits, Redis store', (dialect) => rateLimitSuite(dialect, 'redis'));

describeEachDialect('rate limits while Redis is down', (dialect) => {
  const t = useTestApp(dialect, { limits, redisUrl: 'redis://127.0.0.1:1', redisPrefix: 'celforge-test-down:' }, { extraRoutes: limitTestRoutes });

  it('sign-in fails closed with a 503 problem', async () => {
    const response = await t.app.inject({ method: 'POST', url: '/api/anime/_test/login', payload: { email: 'a@example.test', password: 'x' } });
    expect(response.statusCode).toBe(503);
    expect(response.json()).toMatchObject({ type: 'urn:celforge:problem:rate-limit-unavailable', status: 503 });
    expect(response.headers['retry-after']).toBe('5');
  });

  it('generation fails closed; no job is created', async () => {
    const user = await signIn(t.app);
    const response = await t.app.inject({ method: 'POST', url: '/api/anime/_test/generate', headers: user.authorization, payload: { prompt: 'p', type: 'image' } });
    expect(response.statusCode).toBe(503);
    const jobs = await t.app.services.store.db.selectFrom('jobs').select('id').where('user_id', '=', user.userId).execute();
    expect(jobs).toEqual([]);
  });

  it('anonymous reads fail open, without rate-limit headers, and the failure is counted', async () => {
    const response = await t.app.inject({ url: '/api/anime/health' });
    expect(response.statusCode).toBe(200);
    expect(response.headers.ratelimit).toBeUndefined();
    const metrics = await t.app.services.metrics.render();
    expect(metrics.body).toMatch(/celforge_rate_limit_store_failures_total\{policy="anonymous"\} [1-9]/);
  });

  it('refused credentials fail open too: 401, without rate-limit headers', async () => {
    for (let i = 0; i < 5; i++) {
      const response = await t.app.inject({ url: '/api/anime/_test/read', headers: { authorization: `Bearer ${forgedToken()}` } });
      expect(response.statusCode).toBe(401);
      expect(response.headers.ratelimit).toBeUndefined();
    }
  });

  it('signed-in reads fail closed: revocations cannot be confirmed without Redis', async () => {
    const user = await signIn(t.app);
    const response = await t.app.inject({ url: '/api/anime/_test/read', headers: user.authorization });
    expect(response.statusCode).toBe(503);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  });
});
