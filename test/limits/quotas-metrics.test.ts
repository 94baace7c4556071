import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/config/config.js';
import { Metrics } from '../../src/observability/metrics.js';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { limitTestRoutes } from './routes.js';

const METRICS_TOKEN = 'metrics-token-for-tests-0123456789abcdef';

describeEachDialect('job quotas', (dialect) => {
  // No worker: the stand-in route's rows are only counted, never rendered (a worker would end them
  // at a time of its choosing, and fair share starts a new user's job before older users' ones).
  const t = useTestApp(dialect, { limits: { ...DEFAULT_LIMITS, activeJobs: 2, jobsPerDay: 3 } }, { extraRoutes: limitTestRoutes, worker: false });
  const generate = (authorization: Record<string, string>, type = 'image') =>
    t.app.inject({ method: 'POST', url: '/api/anime/_test/generate', headers: authorization, payload: { prompt: 'a cel', type } });
  const finishAll = (userId: string) =>
    t.app.services.store.db.updateTable('jobs').set({ status: 'succeeded' }).where('user_id', '=', userId).execute();

  it('refuses a job beyond the active-jobs quota with a problem naming it', async () => {
    const user = await signIn(t.app);
    expect((await generate(user.authorization)).statusCode).toBe(202);
    expect((await generate(user.authorization, 'video')).statusCode).toBe(202);
    const refused = await generate(user.authorization);
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(refused.json()).toMatchObject({ type: 'urn:celforge:problem:quota-active-jobs', status: 429, quota: 'active-jobs', limit: 2, used: 2 });
    const rows = await t.app.services.store.db.selectFrom('jobs').select('id').where('user_id', '=', user.userId).execute();
    expect(rows).toHaveLength(2);

    // finished jobs free their slot; the daily count still holds them
    await finishAll(user.userId);
    expect((await generate(user.authorization)).statusCode).toBe(202);
    await finishAll(user.userId);
    const daily = await generate(user.authorization);
    expect(daily.statusCode).toBe(429);
    expect(daily.json()).toMatchObject({ type: 'urn:celforge:problem:quota-jobs-per-day', quota: 'jobs-per-day', limit: 3, used: 3 });
    const retryAfter = Number(daily.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(86_400);
  });

  it("one user's quota does not touch another's", async () => {
    const a = await signIn(t.app);
    const b = await signIn(t.app);
    await generate(a.authorization);
    await generate(a.authorization);
    expect((await generate(a.authorization)).statusCode).toBe(429);
    expect((await generate(b.authorization)).statusCode).toBe(202);
  });

  it('an admin override raises a user\'s quota, and clearing it restores the default', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    const user = await signIn(t.app);
    await generate(user.authorization);
    await generate(user.authorization);
    expect((await generate(user.authorization)).statusCode).toBe(429);

    const put = await t.app.inject({
      method: 'PUT',
      url: `/api/anime/admin/users/${user.userId}/quota`,
      headers: admin.authorization,
      payload: { active_jobs: 5, jobs_per_day: null },
    });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toEqual({
      user_id: user.userId,
      effective: { active_jobs: 5, jobs_per_day: 3 },
      override: { active_jobs: 5, jobs_per_day: null },
      defaults: { active_jobs: 2, jobs_per_day: 3 },
      usage: { active_jobs: 2, jobs_today: 2 },
    });
    const row = await t.app.services.store.db.selectFrom('user_quotas').selectAll().where('user_id', '=', user.userId).executeTakeFirstOrThrow();
    expect(row).toMatchObject({ active_jobs: 5, jobs_per_day: null, updated_by: admin.userId });

    expect((await generate(user.authorization)).statusCode).toBe(202);
    const daily = await generate(user.authorization);
    expect(daily.json()).toMatchObject({ quota: 'jobs-per-day' });

    const get = await t.app.inject({ url: `/api/anime/admin/users/${user.userId}/quota`, headers: admin.authorization });
    expect(get.json()).toMatchObject({ effective: { active_jobs: 5, jobs_per_day: 3 }, usage: { active_jobs: 3, jobs_today: 3 } });

    await t.app.inject({
      method: 'PUT',
      url: `/api/anime/admin/users/${user.userId}/quota`,
      headers: admin.authorization,
      payload: { active_jobs: null, jobs_per_day: null },
    });
    const cleared = await t.app.inject({ url: `/api/anime/admin/users/${user.userId}/quota`, headers: admin.authorization });
    expect(cleared.json()).toMatchObject({ effective: { active_jobs: 2, jobs_per_day: 3 }, override: { active_jobs: null, jobs_per_day: null } });
  });

  it('override endpoints: 403 for a plain user, 401 anonymous, 404 for an unknown user, 400 for bad bodies', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    const user = await signIn(t.app);
    const url = `/api/anime/admin/users/${user.userId}/quota`;
    const asUser = await t.app.inject({ method: 'PUT', url, headers: user.authorization, payload: { active_jobs: 1000, jobs_per_day: 1000 } });
    expect(asUser.statusCode).toBe(403);
    expect((await t.app.inject({ url, headers: user.authorization })).statusCode).toBe(403);
    expect((await t.app.inject({ url })).statusCode).toBe(401);
    expect(await t.app.services.store.db.selectFrom('user_quotas').selectAll().where('user_id', '=', user.userId).execute()).toEqual([]);

    const unknown = await t.app.inject({ url: '/api/anime/admin/users/00000000-0000-0000-0000-000000000000/quota', headers: admin.authorization });
    expect(unknown.statusCode).toBe(404);
    const putUnknown = await t.app.inject({
      method: 'PUT',
      url: "/api/anime/admin/users/x' or '1'='1/quota",
      headers: admin.authorization,
      payload: { active_jobs: 1, jobs_per_day: 1 },
    });
    expect(putUnknown.statusCode).toBe(404);

    for (const payload of [{ active_jobs: -1, jobs_per_day: 1 }, { active_jobs: 1 }, { active_jobs: 1, jobs_per_day: 1, role: 'admin' }, { active_jobs: '5', jobs_per_day: 1 }, { active_jobs: 1.5, jobs_per_day: 1 }]) {
      const bad = await t.app.inject({ method: 'PUT', url, headers: admin.authorization, payload });
      expect(bad.statusCode).toBe(400);
      expect(bad.json()).toMatchObject({ type: 'urn:celforge:problem:validation' });
    }
  });
});

describeEachDialect('metrics', (dialect) => {
  const t = useTestApp(dialect, { secrets: { metricsToken: METRICS_TOKEN } }, { extraRoutes: limitTestRoutes });

  it('refuses anonymous callers, plain users, bad tokens and API keys', async () => {
    const user = await signIn(t.app);
    const anonymous = await t.app.inject('/metrics');
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.headers['www-authenticate']).toMatch(/^Bearer /);
    expect(anonymous.body).not.toMatch(/celforge_/);
    const plain = await t.app.inject({ url: '/metrics', headers: user.authorization });
    expect(plain.statusCode).toBe(403);
    expect(plain.body).not.toMatch(/celforge_http/);
    for (const authorization of [`Bearer ${METRICS_TOKEN}x`, `Bearer ${METRICS_TOKEN.slice(0, -1)}`, 'Bearer x', `ApiKey ${METRICS_TOKEN}`, `Basic ${METRICS_TOKEN}`]) {
      const response = await t.app.inject({ url: '/metrics', headers: { authorization } });
      expect(response.statusCode).toBe(401);
      expect(response.body).not.toMatch(/celforge_http/);
    }
  });

  it('answers admins and the metrics token with the Prometheus text', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    const user = await signIn(t.app);
    await t.app.inject({ method: 'POST', url: '/api/anime/_test/generate', headers: user.authorization, payload: { prompt: 'p', type: 'video' } });
    const refused = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: user.email, password: 'not-the-password-1' } });
    expect(refused.json()).toMatchObject({ status: 401 });
    await t.app.inject({ url: '/api/anime/_test/read', headers: user.authorization });

    const byToken = await t.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(byToken.statusCode).toBe(200);
    expect(byToken.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = byToken.body;
    expect(text).toMatch(/celforge_http_requests_total\{method="GET",route="\/api\/anime\/_test\/read",status="200"\} 1/);
    expect(text).toMatch(/celforge_http_request_duration_seconds_bucket\{le="[^"]+",method="POST",route="\/api\/anime\/_test\/generate",status="202"\} 1/);
    expect(text).toMatch(/celforge_jobs\{state="queued"\} 1/);
    expect(text).toMatch(/celforge_jobs\{state="running"\} 0/);
    expect(text).toMatch(/celforge_queue_depth 1/);
    // counted by the real sign-in, not by a test route
    expect(text).toMatch(/celforge_signin_failures_total\{reason="credentials"\} 1\n/);
    expect(text).toMatch(/# TYPE celforge_rate_limit_rejections_total counter/);
    expect(text).not.toMatch(/_test\/read\?/);

    const byAdmin = await t.app.inject({ url: '/metrics', headers: admin.authorization });
    expect(byAdmin.statusCode).toBe(200);
    expect(byAdmin.body).toMatch(/celforge_http_requests_total\{method="GET",route="\/metrics",status="200"\} 1/);
  });

  it('labels requests by route pattern, never by the raw URL', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    await t.app.inject({ url: '/api/anime/admin/users/secret-looking-id-123/quota', headers: admin.authorization });
    // under /api/: other paths are the studio's pages (index.html)
    await t.app.inject('/api/no/such/path/abc123');
    const text = (await t.app.inject({ url: '/metrics', headers: admin.authorization })).body;
    expect(text).toMatch(/route="\/api\/anime\/admin\/users\/:id\/quota",status="404"/);
    expect(text).toMatch(/route="unmatched",status="404"/);
    expect(text).not.toMatch(/secret-looking-id-123|abc123/);
  });
});

describeEachDialect('metrics without a metrics token', (dialect) => {
  const t = useTestApp(dialect, {}, { extraRoutes: limitTestRoutes });
  it('only admins get in', async () => {
    expect((await t.app.inject({ url: '/metrics', headers: { authorization: 'Bearer undefined' } })).statusCode).toBe(401);
    const admin = await signIn(t.app, { role: 'admin' });
    expect((await t.app.inject({ url: '/metrics', headers: admin.authorization })).statusCode).toBe(200);
  });

  it('holds admins to the rule of admin routes: 2FA enrolled and a fresh step-up', async () => {
    const unenrolled = await signIn(t.app, { role: 'admin', steppedUp: false });
    const refused = await t.app.inject({ url: '/metrics', headers: unenrolled.authorization });
    expect(refused.json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:enrol-2fa' });
    expect(refused.body).not.toMatch(/celforge_http/);
    const stale = await signIn(t.app, { role: 'admin' });
    await t.app.services.store.db.updateTable('sessions').set({ mfa_at: new Date(Date.now() - 16 * 60_000).toISOString() }).where('id', '=', stale.sessionId).execute();
    expect((await t.app.inject({ url: '/metrics', headers: stale.authorization })).json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:step-up-required' });
  });
});

describe('request latency histogram', () => {
  it('counts each request in its bucket, cumulative in the text, with its sum and count', async () => {
    const metrics = new Metrics();
    for (const seconds of [0.0005, 0.001, 0.003, 20]) metrics.observeRequest('GET', '/api/anime/jobs/:id', 200, seconds);
    metrics.observeRequest('POST', '/api/anime/generate', 429, 0.002);
    const text = await metrics.registry.getSingleMetricAsString('celforge_http_request_duration_seconds');
    const line = (le: string) => new RegExp(`_bucket\\{le="${le.replace(/[.+]/g, '\\$&')}",method="GET",route="/api/anime/jobs/:id",status="200"\\} (\\d+)`).exec(text)?.[1];
    expect([line('0.001'), line('0.0025'), line('0.005'), line('10'), line('+Inf')]).toEqual(['2', '2', '3', '3', '4']);
    expect(text).toMatch(/_sum\{method="GET",route="\/api\/anime\/jobs\/:id",status="200"\} 20\.0045\n/);
    expect(text).toMatch(/_count\{method="GET",route="\/api\/anime\/jobs\/:id",status="200"\} 4\n/);
    expect(text).toMatch(/_bucket\{le="0\.0025",method="POST",route="\/api\/anime\/generate",status="429"\} 1\n/);
    const total = await metrics.registry.getSingleMetricAsString('celforge_http_requests_total');
    expect(total).toMatch(/\{method="GET",route="\/api\/anime\/jobs\/:id",status="200"\} 4\n/);
  });
});
