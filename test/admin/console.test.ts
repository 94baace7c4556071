import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { JobsTable } from '../../src/db/schema.js';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { insertJob } from '../support/jobs.js';
import { registerAndLogin } from '../support/users.js';
import { percentiles } from '../../src/production/dashboard.js';

const HOUR = 3_600_000;

describeEachDialect('admin console API', (dialect) => {
  // No worker: the jobs these tests put in the store stay as they are.
  const t = useTestApp(dialect, {}, { worker: false });

  const addJob = (userId: string, job: Partial<JobsTable> & { created_at: string }) => insertJob(t.app.services.store.db, { user_id: userId, ...job });

  const get = (url: string, headers: Record<string, string>) => t.app.inject({ method: 'GET', url, headers });

  it('stats: jobs per hour and day by status and type, waits, active people and rate-limit refusals', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    const maker = await signIn(t.app);
    const now = Date.now();
    const at = (ms: number) => new Date(ms).toISOString();
    // two hours ago: a video that waited 2 s and ran 8 s; now: an image queued, one failed after a 4 s wait
    await addJob(maker.userId, { type: 'video', status: 'succeeded', created_at: at(now - 2 * HOUR), started_at: at(now - 2 * HOUR + 2000), finished_at: at(now - 2 * HOUR + 10_000) });
    await addJob(maker.userId, { status: 'queued', created_at: at(now - 1000) });
    await addJob(maker.userId, { status: 'failed', created_at: at(now - 6000), started_at: at(now - 2000), finished_at: at(now - 1500) });
    // older than the series: counted in totals, in no bucket
    await addJob(maker.userId, { status: 'succeeded', created_at: at(now - 20 * 86_400_000) });
    t.app.services.audit.record({ action: 'ratelimit.reject', outcome: 'denied', actorId: maker.userId, detail: { policy: 'generation', route: '/x' } });
    t.app.services.audit.record({ action: 'ratelimit.reject', outcome: 'denied', actorId: maker.userId, detail: { policy: 'read', route: '/y' } });
    t.app.services.audit.record({ action: 'ratelimit.reject', outcome: 'denied', actorId: maker.userId, detail: { policy: 'generation', route: '/x' } });
    await t.app.services.audit.flush();

    const response = await get('/api/anime/admin/stats', admin.authorization);
    expect(response.statusCode, response.body).toBe(200);
    const stats = response.json();
    expect(stats.series.hourly).toHaveLength(24);
    expect(stats.series.daily).toHaveLength(14);
    const hourly = stats.series.hourly as { at: string; by_status: Record<string, number>; by_type: Record<string, number> }[];
    const current = hourly.at(-1)!;
    expect(Date.parse(current.at)).toBe(Math.floor(now / HOUR) * HOUR);
    expect(current.by_status).toMatchObject({ queued: 1, failed: 1, succeeded: 0 });
    expect(current.by_type).toEqual({ image: 2, video: 0 });
    const twoAgo = hourly.find((b) => b.at === new Date(Math.floor((now - 2 * HOUR) / HOUR) * HOUR).toISOString())!;
    expect(twoAgo.by_status.succeeded).toBe(1);
    expect(twoAgo.by_type.video).toBe(1);
    const daily = stats.series.daily as typeof hourly;
    const sum = (buckets: typeof hourly) => buckets.reduce((n, b) => n + b.by_type.image! + b.by_type.video!, 0);
    expect(sum(hourly)).toBe(3);
    expect(sum(daily)).toBe(3);
    expect(stats.jobs.by_state.succeeded).toBe(2);

    expect(stats.wait_ms_24h).toMatchObject({ count: 2, p50: 2000, p95: 4000 });
    expect(stats.wait_ms_24h.oldest_queued).toBeGreaterThanOrEqual(1000);
    expect(stats.render_ms_24h).toMatchObject({ count: 1, p50: 8000, p95: 8000 });
    // the two sessions made above were used just now
    expect(stats.active_users.last_hour).toBeGreaterThanOrEqual(2);
    expect(stats.active_users.last_day).toBeGreaterThanOrEqual(stats.active_users.last_hour);
    expect(stats.rate_limited_24h.total).toBe(3);
    expect(stats.rate_limited_24h.by_policy).toEqual({ generation: 2, read: 1 });
    expect(stats.rate_limited_24h.hourly).toHaveLength(24);
    expect(stats.rate_limited_24h.hourly.at(-1).count).toBe(3);
    expect(stats.renderer).toMatchObject({ ok: true });
  });

  it('admin routes need a recent second factor in a session, and are not for users', async () => {
    const lapsed = await signIn(t.app, { role: 'admin', steppedUp: false });
    for (const url of ['/api/anime/admin/stats', '/api/anime/admin/jobs', '/api/anime/admin/audit/chain', '/api/auth/users?q=a']) {
      const refused = await get(url, lapsed.authorization);
      expect(refused.statusCode, url).toBe(403);
      expect(refused.json().type, url).toBe('urn:celforge:problem:enrol-2fa');
    }
    const user = await signIn(t.app);
    for (const url of ['/api/anime/admin/jobs', '/api/anime/admin/audit/export', '/api/auth/users?q=a']) {
      const refused = await get(url, user.authorization);
      expect(refused.statusCode, url).toBe(403);
      expect(refused.json().type, url).not.toBe('urn:celforge:problem:step-up-required');
    }
  });

  it('a stepped-up session lapses into step-up-required', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    await t.app.services.store.db.updateTable('sessions').set({ mfa_at: new Date(Date.now() - 16 * 60_000).toISOString() }).where('id', '=', admin.sessionId).execute();
    const refused = await get('/api/anime/admin/jobs', admin.authorization);
    expect(refused.statusCode).toBe(403);
    expect(refused.json().type).toBe('urn:celforge:problem:step-up-required');
  });

  it('jobs: everyone\'s, with owner and timings, filtered by owner; an admin cancels any active one', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    const a = await signIn(t.app);
    const b = await signIn(t.app);
    const now = Date.now();
    const running = await addJob(a.userId, { status: 'running', locked_by: 'worker-7', created_at: new Date(now - 5000).toISOString(), started_at: new Date(now - 3000).toISOString() });
    const done = await addJob(b.userId, { status: 'succeeded', created_at: new Date(now - 4000).toISOString(), started_at: new Date(now - 3500).toISOString(), finished_at: new Date(now - 500).toISOString() });

    const all = await get('/api/anime/admin/jobs?limit=100', admin.authorization);
    expect(all.statusCode, all.body).toBe(200);
    const items = all.json().items as { job_id: string; owner: { email: string }; worker: string | null; wait_ms: number | null; run_ms: number | null }[];
    expect(items.find((j) => j.job_id === running)).toMatchObject({ owner: { id: a.userId, email: a.email }, status: 'running', worker: 'worker-7', wait_ms: 2000, run_ms: null });
    expect(items.find((j) => j.job_id === done)).toMatchObject({ owner: { email: b.email }, wait_ms: 500, run_ms: 3000 });

    const onlyB = await get(`/api/anime/admin/jobs?owner=${encodeURIComponent(b.email)}`, admin.authorization);
    expect(onlyB.json().items.map((j: { job_id: string }) => j.job_id)).toEqual([done]);

    const canceled = await t.app.inject({ method: 'POST', url: `/api/anime/admin/jobs/${running}/cancel`, headers: admin.authorization });
    expect(canceled.statusCode, canceled.body).toBe(200);
    expect(canceled.json()).toMatchObject({ job_id: running, status: 'canceled', owner: { email: a.email } });
    const row = await t.app.services.store.db.selectFrom('jobs').select(['status', 'finished_at']).where('id', '=', running).executeTakeFirstOrThrow();
    expect(row.status).toBe('canceled');
    expect(row.finished_at).not.toBeNull();

    const again = await t.app.inject({ method: 'POST', url: `/api/anime/admin/jobs/${done}/cancel`, headers: admin.authorization });
    expect(again.statusCode).toBe(409);
    expect(again.json().type).toBe('urn:celforge:problem:conflict');
    const missing = await t.app.inject({ method: 'POST', url: `/api/anime/admin/jobs/${randomUUID()}/cancel`, headers: admin.authorization });
    expect(missing.statusCode).toBe(404);

    await t.app.services.audit.flush();
    const audit = await get(`/api/anime/admin/audit?action=admin.job.cancel`, admin.authorization);
    expect(audit.json().items[0]).toMatchObject({ actor_id: admin.userId, target: running, detail: { was: 'running', owner: a.userId } });
  });

  it('users: search by part of the e-mail, create with a one-time password that signs in', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    await signIn(t.app, { email: 'search_me-1@example.test' });
    await signIn(t.app, { email: 'searchXme-2@example.test' });
    const found = await get('/api/auth/users?q=SEARCH_ME', admin.authorization);
    expect(found.statusCode, found.body).toBe(200);
    // "_" is a character here, not a wildcard
    expect(found.json().items.map((u: { email: string }) => u.email)).toEqual(['search_me-1@example.test']);

    const created = await t.app.inject({ method: 'POST', url: '/api/auth/users', headers: admin.authorization, payload: { email: 'Fresh@Example.test', role: 'user' } });
    expect(created.statusCode, created.body).toBe(201);
    const body = created.json();
    expect(body).toMatchObject({ email: 'fresh@example.test', role: 'user', disabled: false });
    expect(body.initial_password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    const login = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: 'fresh@example.test', password: body.initial_password } });
    expect(login.statusCode, login.body).toBe(200);

    // a chosen password is never echoed
    const chosen = await t.app.inject({ method: 'POST', url: '/api/auth/users', headers: admin.authorization, payload: { email: 'chosen@example.test', password: 'a long enough pass phrase 77', role: 'user' } });
    expect(chosen.statusCode).toBe(201);
    expect(chosen.json().initial_password).toBeUndefined();
  });

  it("users: list a person's sessions, end one, and disabling ends the rest and refuses their token", async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    const first = await registerAndLogin(t.app);
    const second = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: first.email, password: first.password }, remoteAddress: '10.9.9.9' });
    const secondToken = { authorization: `Bearer ${second.json().access_token}` };

    const listed = await get(`/api/auth/users/${first.userId}/sessions`, admin.authorization);
    expect(listed.statusCode, listed.body).toBe(200);
    const ids = listed.json().items.map((s: { id: string }) => s.id);
    expect(ids.sort()).toEqual([first.sessionId, second.json().session_id].sort());

    const end = await t.app.inject({ method: 'DELETE', url: `/api/auth/users/${first.userId}/sessions/${first.sessionId}`, headers: admin.authorization });
    expect(end.statusCode, end.body).toBe(204);
    expect((await get('/api/auth/me', first.authorization)).statusCode).toBe(401);
    expect((await get('/api/auth/me', secondToken)).statusCode).toBe(200);
    // someone else's session id under this user: like one that does not exist
    const other = await t.app.inject({ method: 'DELETE', url: `/api/auth/users/${first.userId}/sessions/${admin.sessionId}`, headers: admin.authorization });
    expect(other.statusCode).toBe(404);
    expect((await get('/api/auth/me', admin.authorization)).statusCode).toBe(200);

    const disabled = await t.app.inject({ method: 'PATCH', url: `/api/auth/users/${first.userId}`, headers: admin.authorization, payload: { disabled: true } });
    expect(disabled.statusCode).toBe(200);
    expect((await get('/api/auth/me', secondToken)).statusCode).toBe(401);
    const refresh = await t.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: second.json().refresh_token } });
    expect(refresh.statusCode).toBe(401);
    expect((await get(`/api/auth/users/${first.userId}/sessions`, admin.authorization)).json().items).toEqual([]);

    await t.app.services.audit.flush();
    const trail = await get(`/api/anime/admin/audit?actor=${encodeURIComponent(admin.email)}&action=admin.user`, admin.authorization);
    const actions = trail.json().items.map((r: { action: string }) => r.action);
    expect(actions).toContain('admin.user.session.revoke');
    expect(actions).toContain('admin.user.disable');
  });

  it('audit: chain head, verify now, and the filtered range as JSON lines', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    t.app.services.audit.record({ action: 'export.probe', outcome: 'success', actorId: admin.userId, detail: { n: 1 } });
    t.app.services.audit.record({ action: 'export.probe', outcome: 'failure', actorId: admin.userId, detail: { n: 2 } });
    t.app.services.audit.record({ action: 'export.other', outcome: 'success', actorId: admin.userId });
    await t.app.services.audit.flush();

    const chain = await get('/api/anime/admin/audit/chain', admin.authorization);
    expect(chain.statusCode, chain.body).toBe(200);
    expect(chain.json().head.hash).toMatch(/^[0-9a-f]{64}$/);

    const verified = await t.app.inject({ method: 'POST', url: '/api/anime/admin/audit/verify', headers: admin.authorization });
    expect(verified.statusCode, verified.body).toBe(200);
    const result = verified.json().verified;
    expect(result).toMatchObject({ ok: true, problem: null });
    expect(result.through_seq).toBeGreaterThanOrEqual(chain.json().head.seq);
    expect((await get('/api/anime/admin/audit/chain', admin.authorization)).json().verified).toEqual(result);

    const exported = await get(`/api/anime/admin/audit/export?action=export.probe&actor=${encodeURIComponent(admin.email)}`, admin.authorization);
    expect(exported.statusCode, exported.body).toBe(200);
    expect(exported.headers['content-type']).toMatch(/^application\/x-ndjson/);
    expect(exported.headers['content-disposition']).toMatch(/^attachment; filename="celforge-audit-.*\.jsonl"$/);
    const lines = exported.body.trim().split('\n').map((line) => JSON.parse(line));
    expect(lines.map((r) => [r.action, r.outcome, r.detail])).toEqual([
      ['export.probe', 'success', { n: 1 }],
      ['export.probe', 'failure', { n: 2 }],
    ]);
    expect(lines[1].seq).toBeGreaterThan(lines[0].seq);

    const failures = await get(`/api/anime/admin/audit/export?action=export.probe&outcome=failure`, admin.authorization);
    expect(failures.body.trim().split('\n')).toHaveLength(1);
    const bad = await get('/api/anime/admin/audit/export?from=yesterday', admin.authorization);
    expect(bad.statusCode).toBe(400);
    expect(bad.headers['content-type']).toMatch(/^application\/problem\+json/);
  });
});

describe('dashboard percentiles', () => {
  it('nearest rank, nothing for no values', () => {
    expect(percentiles([])).toEqual({ count: 0, p50: null, p95: null });
    expect(percentiles([5, 1, 3, 2, 4])).toEqual({ count: 5, p50: 3, p95: 5 });
  });
});
