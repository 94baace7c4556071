import { randomUUID } from 'node:crypto';
import type { ExpressionBuilder, Kysely, Selectable, Transaction } from 'kysely';
import type { Store } from '../db/database.js';
import { insertAssets, type AssetRow } from '../assets/store.js';
import type { Database, JobsTable, JobStatus, JobType } from '../db/schema.js';
import type { Cursor } from '../http/pagination.js';

export type JobRow = Selectable<JobsTable>;
export type { JobStatus, JobType } from '../db/schema.js';

export const ACTIVE: JobStatus[] = ['queued', 'running'];

/** A new job's row: queued, not yet tried, private. */
export function newJobRow(
  fields: Pick<JobRow, 'user_id' | 'type' | 'prompt'> & Partial<Pick<JobRow, 'negative_prompt' | 'params' | 'idempotency_key' | 'request_hash'>>,
  now = new Date().toISOString(),
): JobRow {
  return {
    id: randomUUID(),
    negative_prompt: '',
    params: '{}',
    idempotency_key: null,
    request_hash: null,
    ...fields,
    status: 'queued',
    progress: 0,
    error: null,
    attempts: 0,
    locked_by: null,
    locked_until: null,
    run_after: null,
    visibility: null,
    published_at: null,
    created_at: now,
    updated_at: now,
    started_at: null,
    finished_at: null,
  };
}

export interface JobFilter {
  userId: string;
  status?: JobStatus;
  type?: JobType;
  after?: Cursor;
  limit: number;
}

/** Inserts a job; with an idempotency key already used by this user nothing is inserted (false). */
export async function insertJob(
  db: Kysely<Database>,
  job: JobRow,
  admit?: (trx: Transaction<Database>, userId: string) => Promise<void>,
): Promise<boolean> {
  const insert = async (into: Kysely<Database>) => {
    const result = await into
      .insertInto('jobs')
      .values(job)
      .onConflict((oc) => oc.columns(['user_id', 'idempotency_key']).doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0n) === 1;
  };
  if (!admit) return insert(db);
  return db.transaction().execute(async (trx) => {
    await admit(trx, job.user_id);
    return insert(trx);
  });
}

export function findJob(db: Kysely<Database>, id: string): Promise<JobRow | undefined> {
  return db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
}

export function findJobByKey(db: Kysely<Database>, userId: string, key: string): Promise<JobRow | undefined> {
  return db.selectFrom('jobs').selectAll().where('user_id', '=', userId).where('idempotency_key', '=', key).executeTakeFirst();
}

/** One page of a user's jobs, newest first, by keyset (never an offset scan). */
export function listJobs(db: Kysely<Database>, filter: JobFilter): Promise<JobRow[]> {
  let query = db.selectFrom('jobs').selectAll().where('user_id', '=', filter.userId);
  if (filter.status) query = query.where('status', '=', filter.status);
  if (filter.type) query = query.where('type', '=', filter.type);
  const after = filter.after;
  if (after) {
    query = query.where((eb) =>
      eb.or([eb('created_at', '<', after.at), eb.and([eb('created_at', '=', after.at), eb('id', '<', after.id)])]),
    );
  }
  return query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filter.limit).execute();
}

export type OwnedJobRow = JobRow & { owner_email: string | null };

/** A page of everyone's jobs with the owner's e-mail, newest first (admin console). */
export function listAllJobs(
  db: Kysely<Database>,
  filter: { id?: string; status?: JobStatus; type?: JobType; owner?: string; after?: Cursor; limit: number },
): Promise<OwnedJobRow[]> {
  let query = db
    .selectFrom('jobs')
    .leftJoin('users', 'users.id', 'jobs.user_id')
    .selectAll('jobs')
    .select('users.email as owner_email');
  if (filter.id) query = query.where('jobs.id', '=', filter.id);
  if (filter.status) query = query.where('jobs.status', '=', filter.status);
  if (filter.type) query = query.where('jobs.type', '=', filter.type);
  if (filter.owner) query = query.where('users.email', '=', filter.owner.toLowerCase());
  const after = filter.after;
  if (after) {
    query = query.where((eb) =>
      eb.or([eb('jobs.created_at', '<', after.at), eb.and([eb('jobs.created_at', '=', after.at), eb('jobs.id', '<', after.id)])]),
    );
  }
  return query.orderBy('jobs.created_at', 'desc').orderBy('jobs.id', 'desc').limit(filter.limit).execute();
}

/** Ends a queued or running job as canceled; false if it had already ended. */
export async function cancelJob(db: Kysely<Database>, id: string, now: string): Promise<boolean> {
  const result = await db
    .updateTable('jobs')
    .set({ status: 'canceled', finished_at: now, updated_at: now, locked_by: null, locked_until: null, run_after: null })
    .where('id', '=', id)
    .where('status', 'in', ACTIVE)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

// ---------------------------------------------------------------------------------------------
// the durable local queue: the jobs table itself

/** The columns a claim sets: running under this worker's lease, one more attempt. */
export function claimedBy(workerId: string, now: string, leaseUntil: string) {
  return (eb: ExpressionBuilder<Database, 'jobs'>) => ({
    status: 'running' as const,
    locked_by: workerId,
    locked_until: leaseUntil,
    attempts: eb('attempts', '+', 1),
    progress: 0,
    run_after: null,
    started_at: now,
    updated_at: now,
  });
}

/**
 * Takes the oldest due queued job for this worker, atomically: the inner select picks a candidate
 * (PostgreSQL skips rows other workers hold), the outer update re-checks `status = 'queued'`, so
 * two workers can never both get the same job. SQLite runs the statement under its write lock.
 */
export function claimJob(store: Store, workerId: string, now: string, leaseUntil: string): Promise<JobRow | undefined> {
  const { db, dialect } = store;
  let candidate = db
    .selectFrom('jobs')
    .select('id')
    .where('status', '=', 'queued')
    .where((eb) => eb.or([eb('run_after', 'is', null), eb('run_after', '<=', now)]))
    .orderBy('created_at')
    .orderBy('id')
    .limit(1);
  if (dialect === 'postgres') candidate = candidate.forUpdate().skipLocked();
  return db
    .updateTable('jobs')
    .set(claimedBy(workerId, now, leaseUntil))
    .where('id', '=', candidate)
    .where('status', '=', 'queued')
    .returningAll()
    .executeTakeFirst();
}

/**
 * Takes one named job (scale-out: BullMQ says which): a due queued job, or a running one whose
 * worker's lease lapsed. The conditions are re-checked in the update itself, so it is exactly-once.
 */
export function claimJobById(store: Store, id: string, workerId: string, now: string, leaseUntil: string): Promise<JobRow | undefined> {
  return store.db
    .updateTable('jobs')
    .set(claimedBy(workerId, now, leaseUntil))
    .where('id', '=', id)
    .where((eb) =>
      eb.or([
        eb.and([eb('status', '=', 'queued'), eb.or([eb('run_after', 'is', null), eb('run_after', '<=', now)])]),
        eb.and([eb('status', '=', 'running'), eb('locked_until', '<', now)]),
      ]),
    )
    .returningAll()
    .executeTakeFirst();
}

/** Queued jobs (oldest first), for re-announcing them to a distributed queue. */
export function queuedJobs(db: Kysely<Database>, limit: number) {
  return db
    .selectFrom('jobs')
    .select(['id', 'attempts', 'run_after'])
    .where('status', '=', 'queued')
    .orderBy('created_at')
    .limit(limit)
    .execute();
}

/** An update of a job that applies only while this worker still holds it running (not canceled, not taken over). */
function heldBy(db: Kysely<Database>, id: string, workerId: string) {
  return db.updateTable('jobs').where('id', '=', id).where('locked_by', '=', workerId).where('status', '=', 'running');
}

async function updatesOne(update: { executeTakeFirst(): Promise<{ numUpdatedRows: bigint }> }): Promise<boolean> {
  return Number((await update.executeTakeFirst()).numUpdatedRows) === 1;
}

/** Extends this worker's lease; false when the job is no longer its own (canceled, taken over). */
export async function renewLease(db: Kysely<Database>, id: string, workerId: string, leaseUntil: string): Promise<boolean> {
  return updatesOne(heldBy(db, id, workerId).set({ locked_until: leaseUntil }));
}

export async function recordProgress(db: Kysely<Database>, id: string, workerId: string, progress: number, now: string): Promise<boolean> {
  return updatesOne(heldBy(db, id, workerId).set({ progress, updated_at: now }));
}

/** A running job of this worker goes back to the queue (retry after `runAfter`, or shutdown). */
export async function releaseJob(
  db: Kysely<Database>,
  id: string,
  workerId: string,
  changes: { runAfter: string | null; now: string; refundAttempt?: boolean },
): Promise<boolean> {
  return updatesOne(
    heldBy(db, id, workerId).set((eb) => ({
      status: 'queued',
      locked_by: null,
      locked_until: null,
      progress: 0,
      run_after: changes.runAfter,
      updated_at: changes.now,
      ...(changes.refundAttempt && { attempts: eb('attempts', '-', 1) }),
    })),
  );
}

export async function failJob(db: Kysely<Database>, id: string, workerId: string, error: string, now: string): Promise<boolean> {
  return updatesOne(heldBy(db, id, workerId).set({ status: 'failed', error, finished_at: now, updated_at: now, locked_by: null, locked_until: null }));
}

/**
 * Stores the outputs' rows and marks the job succeeded in one transaction, only while this worker
 * still holds it. Rows are keyed by (job, position): a re-run after a crash adds nothing twice.
 */
export async function completeJob(
  db: Kysely<Database>,
  id: string,
  workerId: string,
  assets: AssetRow[],
  now: string,
  /** may refuse the results (throwing) before they are committed, the job still held */
  admit?: (trx: Transaction<Database>) => Promise<void>,
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const held = await updatesOne(
      heldBy(trx, id, workerId).set({ status: 'succeeded', progress: 100, error: null, finished_at: now, updated_at: now, locked_by: null, locked_until: null }),
    );
    if (!held) return false;
    await admit?.(trx);
    await insertAssets(trx, assets);
    return true;
  });
}

/**
 * Jobs whose worker vanished (lease lapsed): back to the queue, or failed once they have used up
 * their attempts (a job that keeps killing its worker must not loop forever).
 */
export async function recoverExpired(db: Kysely<Database>, now: string, maxAttempts: number, error: string): Promise<number> {
  const failed = await db
    .updateTable('jobs')
    .set({ status: 'failed', error, finished_at: now, updated_at: now, locked_by: null, locked_until: null })
    .where('status', '=', 'running')
    .where('locked_until', '<', now)
    .where('attempts', '>=', maxAttempts)
    .executeTakeFirst();
  const requeued = await db
    .updateTable('jobs')
    .set({ status: 'queued', locked_by: null, locked_until: null, progress: 0, updated_at: now })
    .where('status', '=', 'running')
    .where('locked_until', '<', now)
    .executeTakeFirst();
  return Number(failed.numUpdatedRows) + Number(requeued.numUpdatedRows);
}

export async function countQueued(db: Kysely<Database>): Promise<number> {
  const row = await db
    .selectFrom('jobs')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('status', '=', 'queued')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

// ---------------------------------------------------------------------------------------------
// statistics

export async function countByStatus(db: Kysely<Database>): Promise<Map<JobStatus, number>> {
  const rows = await db.selectFrom('jobs').select(['status', (eb) => eb.fn.countAll<number>().as('count')]).groupBy('status').execute();
  return new Map(rows.map((row) => [row.status, Number(row.count)]));
}

export function countByStateAndType(db: Kysely<Database>) {
  return db
    .selectFrom('jobs')
    .select(['status', 'type', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy(['status', 'type'])
    .execute();
}

/** Start and end of jobs that succeeded since `since` (newest first, bounded). */
export function recentRuns(db: Kysely<Database>, since: string, limit: number) {
  return db
    .selectFrom('jobs')
    .select(['started_at', 'finished_at'])
    .where('status', '=', 'succeeded')
    .where('finished_at', '>=', since)
    .orderBy('finished_at', 'desc')
    .limit(limit)
    .execute();
}

/** Jobs of a user that hold a slot (queued or running), and jobs created since `since`. */
export async function countUserJobs(db: Kysely<Database>, userId: string, since: string): Promise<{ active: number; today: number }> {
  const row = await db
    .selectFrom('jobs')
    .select((eb) => [
      eb.fn.sum<number>(eb.case().when('status', 'in', ACTIVE).then(1).else(0).end()).as('active'),
      eb.fn.sum<number>(eb.case().when('created_at', '>=', since).then(1).else(0).end()).as('today'),
    ])
    .where('user_id', '=', userId)
    .where((eb) => eb.or([eb('status', 'in', ACTIVE), eb('created_at', '>=', since)]))
    .executeTakeFirst();
  return { active: Number(row?.active ?? 0), today: Number(row?.today ?? 0) };
}

// ---------------------------------------------------------------------------------------------
// publication (the gallery's)

export type Visibility = NonNullable<JobRow['visibility']>;

/** Sets or clears a succeeded job's visibility; false when the job is not (or no longer) succeeded. */
export async function setVisibility(db: Kysely<Database>, id: string, visibility: Visibility | null, now: string): Promise<boolean> {
  const result = await db
    .updateTable('jobs')
    .set({ visibility, published_at: visibility ? now : null, updated_at: now })
    .where('id', '=', id)
    .where('status', '=', 'succeeded')
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export interface GalleryFilter {
  visibilities: Visibility[];
  type?: JobRow['type'];
  after?: Cursor;
  limit: number;
}

/** Published jobs, newest publication first, by keyset. */
export function listPublished(db: Kysely<Database>, filter: GalleryFilter) {
  let query = db
    .selectFrom('jobs')
    .select(['id', 'type', 'prompt', 'params', 'visibility', 'published_at', 'created_at'])
    .where('visibility', 'in', filter.visibilities)
    .where('status', '=', 'succeeded');
  if (filter.type) query = query.where('type', '=', filter.type);
  const after = filter.after;
  if (after) {
    query = query.where((eb) =>
      eb.or([eb('published_at', '<', after.at), eb.and([eb('published_at', '=', after.at), eb('id', '<', after.id)])]),
    );
  }
  return query.orderBy('published_at', 'desc').orderBy('id', 'desc').limit(filter.limit).execute();
}

// ---------------------------------------------------------------------------------------------
// deletion (lifecycle composes it with the assets and share links of the same jobs)

export async function jobIdsOf(db: Kysely<Database>, userId: string): Promise<string[]> {
  return (await db.selectFrom('jobs').select('id').where('user_id', '=', userId).execute()).map((row) => row.id);
}

/** Failed and canceled jobs that finished before `before`, oldest first. */
export async function expiredEndedJobs(db: Kysely<Database>, before: string, limit: number): Promise<string[]> {
  const rows = await db
    .selectFrom('jobs')
    .select('id')
    .where('status', 'in', ['failed', 'canceled'] satisfies JobStatus[])
    .where('finished_at', '<', before)
    .orderBy('finished_at')
    .limit(limit)
    .execute();
  return rows.map((row) => row.id);
}

export async function deleteJobs(db: Kysely<Database>, jobIds: string[]): Promise<void> {
  if (jobIds.length > 0) await db.deleteFrom('jobs').where('id', 'in', jobIds).execute();
}
