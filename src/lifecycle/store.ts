/**
 * Deleting jobs and accounts: one transaction across the owners' tables, each changed through its
 * owner's store (production's jobs, assets' rows, sharing's links, identity's users, limits' quotas).
 */
import type { Kysely } from 'kysely';
import { deleteAssetRows, storageKeysOf } from '../assets/store.js';
import type { Database } from '../db/schema.js';
import { deleteUserApiKeys } from '../identity/api-keys/store.js';
import { tombstoneUser } from '../identity/store.js';
import { deleteUserQuota } from '../limits/quota-store.js';
import { deleteJobs, jobIdsOf } from '../production/store.js';
import { deleteShareLinks } from '../sharing/store.js';

/**
 * Deletes jobs with their asset rows and share links in one transaction; returns the storage keys
 * whose objects the caller removes next (what it cannot remove, the sweep does later).
 */
export async function deleteJobRows(db: Kysely<Database>, jobIds: string[]): Promise<string[]> {
  if (jobIds.length === 0) return [];
  return db.transaction().execute(async (trx) => {
    const keys = await storageKeysOf(trx, { jobIds });
    await deleteShareLinks(trx, { jobIds });
    await deleteAssetRows(trx, { jobIds });
    await deleteJobs(trx, jobIds);
    return keys;
  });
}

/**
 * What deleting an account removes, in one transaction: jobs, assets, share links, API keys,
 * sessions (refresh tokens go with them), recovery codes and quota overrides. The user row stays
 * as a disabled tombstone (see `tombstoneUser`).
 */
export async function deleteAccountRows(db: Kysely<Database>, userId: string, now: string): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    const jobs = await jobIdsOf(trx, userId);
    const keys = await storageKeysOf(trx, { userId });
    await deleteShareLinks(trx, { userId });
    await deleteAssetRows(trx, { userId });
    await deleteJobs(trx, jobs);
    await deleteUserApiKeys(trx, userId);
    await deleteUserQuota(trx, userId);
    await tombstoneUser(trx, userId, now);
    return keys;
  });
}
