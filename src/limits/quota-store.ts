import type { Kysely } from 'kysely';
import type { Database, UserQuotasTable } from '../db/schema.js';

export async function findUserQuota(db: Kysely<Database>, userId: string): Promise<UserQuotasTable | undefined> {
  return db.selectFrom('user_quotas').selectAll().where('user_id', '=', userId).executeTakeFirst();
}

export async function saveUserQuota(db: Kysely<Database>, row: UserQuotasTable): Promise<void> {
  await db
    .insertInto('user_quotas')
    .values(row)
    .onConflict((oc) =>
      oc.column('user_id').doUpdateSet({
        active_jobs: row.active_jobs,
        jobs_per_day: row.jobs_per_day,
        updated_at: row.updated_at,
        updated_by: row.updated_by,
      }),
    )
    .execute();
}

export async function userExists(db: Kysely<Database>, userId: string): Promise<boolean> {
  const row = await db.selectFrom('users').select('id').where('id', '=', userId).executeTakeFirst();
  return row !== undefined;
}

/** Jobs of a user that hold a slot (queued or running), and jobs created since `since`. */
export async function countUserJobs(db: Kysely<Database>, userId: string, since: string): Promise<{ active: number; today: number }> {
  const row = await db
    .selectFrom('jobs')
    .select((eb) => [
      eb.fn.sum<number>(eb.case().when('status', 'in', ['queued', 'running']).then(1).else(0).end()).as('active'),
      eb.fn.sum<number>(eb.case().when('created_at', '>=', since).then(1).else(0).end()).as('today'),
    ])
    .where('user_id', '=', userId)
    .where((eb) => eb.or([eb('status', 'in', ['queued', 'running']), eb('created_at', '>=', since)]))
    .executeTakeFirst();
  return { active: Number(row?.active ?? 0), today: Number(row?.today ?? 0) };
}
