import { sql, type Kysely, type Transaction } from 'kysely';
import type { Auditor } from '../audit/events.js';
import type { LimitSettings } from '../config/config.js';
import type { Store } from '../db/database.js';
import type { Database } from '../db/schema.js';
import { HttpProblem, notFound } from '../http/problem.js';
import { userExists } from '../identity/store.js';
import { countUserJobs } from '../production/store.js';
import { findUserQuota, saveUserQuota } from './quota-store.js';

export interface QuotaLimits {
  active_jobs: number;
  jobs_per_day: number;
}

export interface QuotaView {
  user_id: string;
  /** what applies now */
  effective: QuotaLimits;
  /** the admin's override per quota; null = the configured default */
  override: { active_jobs: number | null; jobs_per_day: number | null };
  defaults: QuotaLimits;
  usage: { active_jobs: number; jobs_today: number };
}

function startOfUtcDay(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
}

/**
 * Per-user job quotas: jobs holding a slot at once (queued or running) and jobs created per UTC
 * day, from the configured defaults unless an admin set an override for that user.
 *
 * Checked twice: early (`assertRoomForJob`, before the body is worked on) and exactly
 * (`admitJob`, in the insert's transaction). On PostgreSQL the latter first takes a per-user
 * advisory transaction lock, so simultaneous submissions on any number of instances count one
 * after the other; on SQLite one write transaction runs at a time anyway.
 */
export class QuotaService {
  constructor(
    private readonly store: Store,
    private readonly defaults: Pick<LimitSettings, 'activeJobs' | 'jobsPerDay'>,
    private readonly audit: Auditor,
    private readonly now: () => Date = () => new Date(),
  ) {}

  private get defaultLimits(): QuotaLimits {
    return { active_jobs: this.defaults.activeJobs, jobs_per_day: this.defaults.jobsPerDay };
  }

  /** `db`: a transaction to read in (SQLite has one connection: a read outside a running transaction would wait for it) */
  async limitsFor(userId: string, db: Kysely<Database> = this.store.db): Promise<{ effective: QuotaLimits; override: QuotaView['override'] }> {
    const row = await findUserQuota(db, userId);
    const override = { active_jobs: row?.active_jobs ?? null, jobs_per_day: row?.jobs_per_day ?? null };
    return {
      override,
      effective: {
        active_jobs: override.active_jobs ?? this.defaults.activeJobs,
        jobs_per_day: override.jobs_per_day ?? this.defaults.jobsPerDay,
      },
    };
  }

  /** Throws a 429 naming the quota when one more job would exceed it. */
  async assertRoomForJob(userId: string): Promise<void> {
    await this.#assertRoom(this.store.db, userId);
  }

  /** The exact check, inside the transaction that inserts the job (see the class comment). */
  async admitJob(trx: Transaction<Database>, userId: string): Promise<void> {
    if (this.store.dialect === 'postgres') {
      await sql`select pg_advisory_xact_lock(hashtextextended(${`celforge:quota:${userId}`}, 0))`.execute(trx);
    }
    await this.#assertRoom(trx, userId);
  }

  async #assertRoom(db: Kysely<Database>, userId: string): Promise<void> {
    const now = this.now();
    const dayStart = startOfUtcDay(now);
    const { effective } = await this.limitsFor(userId, db);
    const usage = await countUserJobs(db, userId, dayStart.toISOString());
    if (usage.active >= effective.active_jobs) {
      throw new HttpProblem(429, 'quota-active-jobs', `You have ${usage.active} active jobs; the limit is ${effective.active_jobs}. Wait for one to finish or cancel one.`, {
        title: 'Active jobs quota reached',
        extensions: { quota: 'active-jobs', limit: effective.active_jobs, used: usage.active },
      });
    }
    if (usage.today >= effective.jobs_per_day) {
      const retryAfter = Math.max(1, Math.ceil((dayStart.getTime() + 86_400_000 - now.getTime()) / 1000));
      throw new HttpProblem(429, 'quota-jobs-per-day', `You have submitted ${usage.today} jobs today (UTC); the limit is ${effective.jobs_per_day}.`, {
        title: 'Daily jobs quota reached',
        headers: { 'retry-after': String(retryAfter) },
        extensions: { quota: 'jobs-per-day', limit: effective.jobs_per_day, used: usage.today },
      });
    }
  }

  async view(userId: string): Promise<QuotaView> {
    if (!(await userExists(this.store.db, userId))) throw notFound('No such user.');
    const now = this.now();
    const [limits, usage] = await Promise.all([this.limitsFor(userId), countUserJobs(this.store.db, userId, startOfUtcDay(now).toISOString())]);
    return { user_id: userId, ...limits, defaults: this.defaultLimits, usage: { active_jobs: usage.active, jobs_today: usage.today } };
  }

  async setOverride(
    userId: string,
    override: QuotaView['override'],
    by: { actorId: string; ip: string; requestId: string },
  ): Promise<QuotaView> {
    if (!(await userExists(this.store.db, userId))) throw notFound('No such user.');
    await saveUserQuota(this.store.db, {
      user_id: userId,
      active_jobs: override.active_jobs,
      jobs_per_day: override.jobs_per_day,
      updated_at: this.now().toISOString(),
      updated_by: by.actorId,
    });
    this.audit.record({
      action: 'admin.user.quota',
      outcome: 'success',
      actorId: by.actorId,
      target: userId,
      ip: by.ip,
      requestId: by.requestId,
      detail: { active_jobs: override.active_jobs, jobs_per_day: override.jobs_per_day },
    });
    return this.view(userId);
  }
}
