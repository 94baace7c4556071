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

export async function findStorageOverride(db: Kysely<Database>, userId: string): Promise<number | null> {
  const row = await db.selectFrom('user_quotas').select('storage_bytes').where('user_id', '=', userId).executeTakeFirst();
  return row?.storage_bytes === null || row?.storage_bytes === undefined ? null : Number(row.storage_bytes);
}

export async function saveStorageOverride(db: Kysely<Database>, userId: string, bytes: number | null, actorId: string, now: string): Promise<void> {
  await db
    .insertInto('user_quotas')
    .values({ user_id: userId, active_jobs: null, jobs_per_day: null, storage_bytes: bytes, updated_at: now, updated_by: actorId })
    .onConflict((oc) => oc.column('user_id').doUpdateSet({ storage_bytes: bytes, updated_at: now, updated_by: actorId }))
    .execute();
}

/** Deletes a user's quota overrides (deleting the account). */
export async function deleteUserQuota(db: Kysely<Database>, userId: string): Promise<void> {
  await db.deleteFrom('user_quotas').where('user_id', '=', userId).execute();
}
