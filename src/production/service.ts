import { setTimeout as delay } from 'node:timers/promises';
import type { Transaction } from 'kysely';
import type { Principal } from '../access/principal.js';
import type { UrlSigner } from '../assets/signed-urls.js';
import type { Auditor } from '../audit/events.js';
import type { Store } from '../db/database.js';
import type { Database } from '../db/schema.js';
import { HttpProblem, badRequest, conflict, notFound } from '../http/problem.js';
import type { Renderer, RendererHealth } from '../renderers/renderer.js';
import { decodeCursor, encodeCursor, paginate, UUID } from '../http/pagination.js';
import type { RequestContext } from '../http/request-context.js';
import type { JobEvents } from './events.js';
import { IDEMPOTENCY_KEY, normalise, type GenerateBody } from './params.js';
import type { JobQueue } from './queue.js';
import { assetsOf } from '../assets/store.js';
import { countUsers } from '../identity/store.js';
import {
  cancelJob,
  countByStateAndType,
  findJob,
  findJobByKey,
  insertJob,
  listJobs,
  newJobRow,
  listAllJobs,
  recentRuns,
  type JobRow,
  type JobStatus,
  type JobType,
} from './store.js';
import { gpuSecondsByUser, startingBefore, type FairSharePolicy } from './fleet/fair-share.js';
import { activeUsers, jobSeries, oldestQueued, percentiles, rateRejections, SERIES, waitTimes } from './dashboard.js';
import { adminJobView, jobView, type AdminJob, type AdminJobPage, type JobPage, type JobView } from './views.js';

/** Where a request came from, for the audit trail. */
export type { RequestContext } from '../http/request-context.js';

export interface ListQuery {
  limit?: number;
  cursor?: string;
  status?: JobStatus;
  type?: JobType;
}

export interface ProductionDeps {
  store: Store;
  queue: JobQueue;
  events: JobEvents;
  signer: UrlSigner;
  audit: Auditor;
  renderer: Renderer;
  /** the fair-share policy the workers claim by (ETAs replay it) */
  policy?: FairSharePolicy;
  /** run in the insert's transaction before a new job goes in (the exact quota check); throws to refuse */
  admit?: (trx: Transaction<Database>, userId: string) => Promise<void>;
}

const HEALTH_TIMEOUT_MS = 2000;

/** The rules of the job pipeline: who may see and change which job, and what a job answer holds. */
export class ProductionService {
  constructor(private readonly deps: ProductionDeps) {}

  async generate(
    principal: Principal,
    body: GenerateBody,
    idempotencyKey: string | undefined,
    context: RequestContext,
  ): Promise<{ job: JobView; replayed: boolean }> {
    if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
      throw badRequest('Idempotency-Key must be 1–128 visible ASCII characters.', [{ pointer: '/headers/idempotency-key', detail: 'is not valid' }]);
    }
    const request = normalise(body);
    const { db } = this.deps.store;
    if (idempotencyKey !== undefined) {
      const existing = await findJobByKey(db, principal.userId, idempotencyKey);
      if (existing) return { job: await this.#replay(existing, request.requestHash), replayed: true };
    }
    const row = newJobRow({
      user_id: principal.userId,
      type: request.type,
      prompt: request.prompt,
      negative_prompt: request.negativePrompt,
      params: JSON.stringify(request.params),
      idempotency_key: idempotencyKey ?? null,
      request_hash: request.requestHash,
    });
    if (!(await insertJob(db, row, this.deps.admit))) {
      // The same key won a race a moment ago.
      const existing = await findJobByKey(db, principal.userId, idempotencyKey!);
      if (!existing) throw new HttpProblem(503, 'retry', 'Please retry the request.', { headers: { 'retry-after': '1' } });
      return { job: await this.#replay(existing, request.requestHash), replayed: true };
    }
    await this.deps.queue.enqueue(row);
    this.deps.audit.record({
      action: 'job.create',
      outcome: 'success',
      actorId: principal.userId,
      target: row.id,
      ip: context.ip,
      requestId: context.requestId,
      detail: { type: row.type, idempotent: idempotencyKey !== undefined },
    });
    return { job: jobView(row, [], this.deps.signer), replayed: false };
  }

  async #replay(existing: JobRow, requestHash: string): Promise<JobView> {
    if (existing.request_hash !== requestHash) {
      throw conflict('This Idempotency-Key was used for a different request; use a new key.');
    }
    return this.#view(existing);
  }

  async get(principal: Principal, id: string): Promise<JobView> {
    return this.#view(await this.ownJob(principal, id));
  }

  /** The caller's job, or a 404 exactly like a job that does not exist. */
  async ownJob(principal: Principal, id: string): Promise<JobRow> {
    const job = UUID.test(id) ? await findJob(this.deps.store.db, id) : undefined;
    if (!job || job.user_id !== principal.userId) throw notFound('No such job.');
    return job;
  }

  async list(principal: Principal, query: ListQuery): Promise<JobPage> {
    const limit = query.limit ?? 20;
    const after = decodeCursor(query.cursor);
    const rows = await listJobs(this.deps.store.db, {
      userId: principal.userId,
      status: query.status,
      type: query.type,
      after,
      limit: limit + 1,
    });
    const { page, next } = paginate(rows, limit, (last) => encodeCursor({ at: last.created_at, id: last.id }));
    const assets = await assetsOf(this.deps.store.db, page.map((job) => job.id));
    return {
      items: page.map((job) => jobView(job, assets.filter((a) => a.job_id === job.id), this.deps.signer)),
      next_cursor: next,
    };
  }

  async cancel(principal: Principal, id: string, context: RequestContext): Promise<JobView> {
    const job = await this.ownJob(principal, id);
    await this.#end(job, principal, context, 'job.cancel', { was: job.status });
    return this.get(principal, job.id);
  }

  /** Ends a queued or running job as canceled: the row, the queue, the live stream, the audit trail. */
  async #end(job: JobRow, principal: Principal, context: RequestContext, action: string, detail: Record<string, unknown>): Promise<void> {
    if (!(await cancelJob(this.deps.store.db, job.id, new Date().toISOString()))) {
      throw conflict(`The job has already ended (${(await findJob(this.deps.store.db, job.id))?.status ?? job.status}).`);
    }
    await this.deps.queue.cancel(job.id);
    this.deps.events.publish({ kind: 'status', jobId: job.id, status: 'canceled', progress: job.progress });
    this.deps.audit.record({ action, outcome: 'success', actorId: principal.userId, target: job.id, ip: context.ip, requestId: context.requestId, detail });
  }

  async #view(job: JobRow): Promise<JobView> {
    const assets = job.status === 'succeeded' ? await assetsOf(this.deps.store.db, [job.id]) : [];
    const view = jobView(job, assets, this.deps.signer);
    if (job.status === 'queued' && this.deps.renderer.etaMs) {
      const eta = this.deps.renderer.etaMs(await startingBefore(this.deps.store.db, job, new Date(), this.deps.policy), job.type);
      if (eta !== undefined) view.eta_seconds = Math.ceil(eta / 1000);
    }
    return view;
  }

  async stats() {
    const { db } = this.deps.store;
    const now = Date.now();
    const since = new Date(now - 86_400_000).toISOString();
    const lastHour = new Date(now - 3_600_000).toISOString();
    const [groups, users, depth, runs, renderer, gpu, hourly, daily, waits, oldest, activeHour, activeDay, rejections] = await Promise.all([
      countByStateAndType(db),
      countUsers(db),
      this.deps.queue.depth(),
      recentRuns(db, since, 50_000),
      this.#rendererHealth(),
      gpuSecondsByUser(db, new Date(now)),
      jobSeries(db, now, SERIES.hours, 'hour'),
      jobSeries(db, now, SERIES.days, 'day'),
      waitTimes(db, since),
      oldestQueued(db, now),
      activeUsers(db, lastHour),
      activeUsers(db, since),
      rateRejections(db, now, SERIES.hours),
    ]);
    const byState: Record<string, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, canceled: 0 };
    const byType: Record<string, number> = { image: 0, video: 0 };
    for (const group of groups) {
      byState[group.status] = (byState[group.status] ?? 0) + Number(group.n);
      byType[group.type] = (byType[group.type] ?? 0) + Number(group.n);
    }
    const durations = runs
      .filter((run) => run.started_at && run.finished_at)
      .map((run) => Date.parse(run.finished_at!) - Date.parse(run.started_at!));
    return {
      generated_at: new Date(now).toISOString(),
      jobs: { by_state: byState, by_type: byType },
      active_jobs: byState.running ?? 0,
      queue_depth: depth,
      users,
      active_users: { last_hour: activeHour, last_day: activeDay },
      render_ms_24h: percentiles(durations),
      wait_ms_24h: { ...waits, oldest_queued: oldest },
      series: { hourly, daily },
      rate_limited_24h: rejections,
      renderer,
      fleet: this.deps.renderer.fleetStats?.() ?? null,
      gpu_seconds_by_user: gpu.slice(0, 100),
    };
  }

  /** Every job, newest first, with its owner (admin console). */
  async adminList(query: ListQuery & { owner?: string }): Promise<AdminJobPage> {
    const limit = query.limit ?? 50;
    const after = decodeCursor(query.cursor);
    const rows = await listAllJobs(this.deps.store.db, { status: query.status, type: query.type, owner: query.owner, after, limit: limit + 1 });
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page.map((job) => adminJobView(job, this.deps.renderer.name)),
      next_cursor: rows.length > limit && last ? encodeCursor({ at: last.created_at, id: last.id }) : null,
    };
  }

  /** An administrator ends anyone's job; the owner sees it canceled like one they ended. */
  async adminCancel(principal: Principal, id: string, context: RequestContext): Promise<AdminJob> {
    const job = UUID.test(id) ? await findJob(this.deps.store.db, id) : undefined;
    if (!job) throw notFound('No such job.');
    await this.#end(job, principal, context, 'admin.job.cancel', { was: job.status, owner: job.user_id });
    const [row] = await listAllJobs(this.deps.store.db, { id: job.id, limit: 1 });
    return adminJobView(row!, this.deps.renderer.name);
  }

  async #rendererHealth(): Promise<RendererHealth> {
    const name = this.deps.renderer.name;
    const answered = new AbortController();
    try {
      return await Promise.race([
        this.deps.renderer.health(),
        delay<RendererHealth>(HEALTH_TIMEOUT_MS, { name, ok: false }, { signal: answered.signal }),
      ]);
    } catch {
      return { name, ok: false };
    } finally {
      answered.abort();
    }
  }
}
