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
