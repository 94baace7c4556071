import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';

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

/**
 * Deletes jobs with their asset rows and share links in one transaction; returns the storage keys
 * whose objects the caller removes next (what it cannot remove, the sweep does later).
 */
export async function deleteJobRows(db: Kysely<Database>, jobIds: string[]): Promise<string[]> {
  if (jobIds.length === 0) return [];
  return db.transaction().execute(async (trx) => {
    const keys = await trx.selectFrom('assets').select('storage_key').where('job_id', 'in', jobIds).execute();
    await trx.deleteFrom('share_links').where('job_id', 'in', jobIds).execute();
    await trx.deleteFrom('assets').where('job_id', 'in', jobIds).execute();
    await trx.deleteFrom('jobs').where('id', 'in', jobIds).execute();
    return keys.map((row) => row.storage_key);
  });
}

export async function jobIdsOf(db: Kysely<Database>, userId: string): Promise<string[]> {
  return (await db.selectFrom('jobs').select('id').where('user_id', '=', userId).execute()).map((row) => row.id);
}

/** Failed and canceled jobs that finished before `before`, oldest first. */
export async function expiredEndedJobs(db: Kysely<Database>, before: string, limit: number): Promise<string[]> {
  const rows = await db
    .selectFrom('jobs')
    .select('id')
    .where('status', 'in', ['failed', 'canceled'])
    .where('finished_at', '<', before)
    .orderBy('finished_at')
    .limit(limit)
    .execute();
  return rows.map((row) => row.id);
}

/**
 * What deleting an account removes, in one transaction: jobs, assets, share links, API keys,
 * sessions (refresh tokens go with them), recovery codes and quota overrides. The user row stays
 * as a disabled tombstone without email or password, so the audit trail's actor ids still name
 * someone and every instance (also one started later) refuses the user's tokens.
 */
export async function deleteAccountRows(db: Kysely<Database>, userId: string, now: string): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    const jobs = (await trx.selectFrom('jobs').select('id').where('user_id', '=', userId).execute()).map((row) => row.id);
    const keys = (await trx.selectFrom('assets').select('storage_key').where('user_id', '=', userId).execute()).map((row) => row.storage_key);
    await trx.deleteFrom('share_links').where('user_id', '=', userId).execute();
    await trx.deleteFrom('assets').where('user_id', '=', userId).execute();
    if (jobs.length > 0) await trx.deleteFrom('jobs').where('id', 'in', jobs).execute();
    await trx.deleteFrom('api_keys').where('user_id', '=', userId).execute();
    const sessions = trx.selectFrom('sessions').select('id').where('user_id', '=', userId);
    await trx.deleteFrom('refresh_tokens').where('session_id', 'in', sessions).execute();
    await trx.deleteFrom('sessions').where('user_id', '=', userId).execute();
    await trx.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
    await trx.deleteFrom('user_quotas').where('user_id', '=', userId).execute();
    await trx
      .updateTable('users')
      .set({ email: `deleted-${userId}@deleted.invalid`, password_hash: '!', disabled: 1, totp_secret: null, totp_enabled: 0, totp_last_step: null, updated_at: now })
      .where('id', '=', userId)
      .execute();
    return keys;
  });
}
