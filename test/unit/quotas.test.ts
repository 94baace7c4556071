import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent, Auditor } from '../../src/audit/events.js';
import type { JobStatus } from '../../src/db/schema.js';
import { HttpProblem } from '../../src/http/problem.js';
import { QuotaService } from '../../src/limits/quotas.js';
import { insertJob } from '../support/jobs.js';
import { addUser, sqliteStore } from './memory-store.js';

const DEFAULTS = { activeJobs: 2, jobsPerDay: 4 };
let store: Awaited<ReturnType<typeof sqliteStore>>;
let now = new Date('2026-03-01T18:00:00Z');
const recorded: AuditEvent[] = [];
const audit: Auditor = { record: (event) => void recorded.push(event), flush: async () => {}, close: async () => {} };
let quotas: QuotaService;

beforeAll(async () => {
  store = await sqliteStore();
  quotas = new QuotaService(store, DEFAULTS, audit, () => now);
});
afterAll(() => store.drop());

async function addJob(userId: string, status: JobStatus, createdAt: Date): Promise<void> {
  await insertJob(store.db, { user_id: userId, status, prompt: 'p', created_at: createdAt.toISOString() });
}

async function refusal(userId: string): Promise<HttpProblem | 'room'> {
  try {
    await quotas.assertRoomForJob(userId);
    return 'room';
  } catch (error) {
    expect(error).toBeInstanceOf(HttpProblem);
    return error as HttpProblem;
  }
}

describe('job quotas', () => {
  it('counts queued and running jobs against the active quota, finished ones not', async () => {
    await addUser(store, 'active');
    await addJob('active', 'succeeded', new Date('2026-02-20T00:00:00Z'));
    await addJob('active', 'failed', new Date('2026-02-20T00:00:00Z'));
    await addJob('active', 'queued', new Date('2026-02-28T00:00:00Z'));
    expect(await refusal('active')).toBe('room');
    await addJob('active', 'running', new Date('2026-02-28T00:00:00Z'));
    const problem = await refusal('active');
    expect(problem).toMatchObject({ status: 429, slug: 'quota-active-jobs', extensions: { quota: 'active-jobs', limit: 2, used: 2 } });
    expect((problem as HttpProblem).headers['retry-after']).toBeUndefined();
  });

  it('counts the jobs created since midnight UTC against the daily quota and says when it resets', async () => {
    await addUser(store, 'daily');
    await addJob('daily', 'succeeded', new Date('2026-02-28T23:59:59.999Z')); // yesterday
    for (let i = 0; i < 3; i++) await addJob('daily', 'succeeded', new Date('2026-03-01T00:00:00Z'));
    expect(await refusal('daily')).toBe('room');
    await addJob('daily', 'canceled', new Date('2026-03-01T17:59:00Z'));
    const problem = await refusal('daily');
    expect(problem).toMatchObject({ status: 429, slug: 'quota-jobs-per-day', extensions: { quota: 'jobs-per-day', limit: 4, used: 4 } });
    expect((problem as HttpProblem).headers['retry-after']).toBe(String(6 * 3600));
  });

  it('starts a new day at midnight UTC', async () => {
    await addUser(store, 'rollover');
    for (let i = 0; i < 4; i++) await addJob('rollover', 'succeeded', new Date('2026-03-01T23:00:00Z'));
    now = new Date('2026-03-01T23:59:59.500Z');
    expect(await refusal('rollover')).toMatchObject({ slug: 'quota-jobs-per-day', headers: { 'retry-after': '1' } });
    now = new Date('2026-03-02T00:00:00Z');
    expect(await refusal('rollover')).toBe('room');
    now = new Date('2026-03-01T18:00:00Z');
  });

  it('applies an admin’s override per quota, audits it, and falls back to the default when cleared', async () => {
    await addUser(store, 'override');
    await addJob('override', 'queued', now);
    await addJob('override', 'queued', now);
    expect(await refusal('override')).toMatchObject({ slug: 'quota-active-jobs' });

    const by = { actorId: 'admin-1', ip: '192.0.2.1', requestId: 'r-1' };
    const view = await quotas.setOverride('override', { active_jobs: 3, jobs_per_day: null }, by);
    expect(view).toEqual({
      user_id: 'override',
      effective: { active_jobs: 3, jobs_per_day: 4 },
      override: { active_jobs: 3, jobs_per_day: null },
      defaults: { active_jobs: 2, jobs_per_day: 4 },
      usage: { active_jobs: 2, jobs_today: 2 },
    });
    expect(recorded.at(-1)).toMatchObject({ action: 'admin.user.quota', outcome: 'success', actorId: 'admin-1', target: 'override', detail: { active_jobs: 3, jobs_per_day: null } });
    expect(await refusal('override')).toBe('room');

    await quotas.setOverride('override', { active_jobs: null, jobs_per_day: 1 }, by);
    expect(await refusal('override')).toMatchObject({ slug: 'quota-active-jobs', extensions: { limit: 2 } });
    await store.db.updateTable('jobs').set({ status: 'succeeded' }).where('user_id', '=', 'override').execute();
    expect(await refusal('override')).toMatchObject({ slug: 'quota-jobs-per-day', extensions: { limit: 1, used: 2 } });
  });

  it('admits a job in the inserting transaction by the same rules', async () => {
    await addUser(store, 'exact');
    await addJob('exact', 'running', now);
    await expect(store.db.transaction().execute((trx) => quotas.admitJob(trx, 'exact'))).resolves.toBeUndefined();
    await addJob('exact', 'queued', now);
    await expect(store.db.transaction().execute((trx) => quotas.admitJob(trx, 'exact'))).rejects.toMatchObject({ status: 429, slug: 'quota-active-jobs' });
  });

  it('answers 404 for an unknown user, and changes nothing', async () => {
    const before = recorded.length;
    await expect(quotas.view('ghost')).rejects.toMatchObject({ status: 404 });
    await expect(quotas.setOverride('ghost', { active_jobs: 9, jobs_per_day: 9 }, { actorId: 'a', ip: 'i', requestId: 'r' })).rejects.toMatchObject({ status: 404 });
    expect(recorded.length).toBe(before);
    expect(await store.db.selectFrom('user_quotas').selectAll().where('user_id', '=', 'ghost').execute()).toEqual([]);
  });
});
