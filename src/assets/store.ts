/** The `assets` table: one row per stored result of a job (its original; derivatives hang off its key). */
import type { Kysely, Selectable } from 'kysely';
import type { AssetsTable, Database } from '../db/schema.js';

export type AssetRow = Selectable<AssetsTable>;

export function assetsOf(db: Kysely<Database>, jobIds: string[]): Promise<AssetRow[]> {
  if (jobIds.length === 0) return Promise.resolve([]);
  return db.selectFrom('assets').selectAll().where('job_id', 'in', jobIds).orderBy('job_id').orderBy('position').execute();
}

export function findAsset(db: Kysely<Database>, id: string): Promise<AssetRow | undefined> {
  return db.selectFrom('assets').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Rows of a job's results, in the job's completing transaction; keyed by (job, position), a re-run adds nothing twice. */
export async function insertAssets(trx: Kysely<Database>, assets: AssetRow[]): Promise<void> {
  if (assets.length === 0) return;
  await trx
    .insertInto('assets')
    .values(assets)
    .onConflict((oc) => oc.columns(['job_id', 'position']).doNothing())
    .execute();
}

/** Bytes of results a user keeps (originals; thumbnails are small and not counted). */
export async function storedBytes(db: Kysely<Database>, userId: string): Promise<number> {
  const row = await db
    .selectFrom('assets')
    .select((eb) => eb.fn.sum<number | string>('byte_size').as('bytes'))
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return Number(row?.bytes ?? 0);
}

/** Of these storage keys, the ones an asset row still names. */
export async function knownStorageKeys(db: Kysely<Database>, jobIds: string[]): Promise<Set<string>> {
  if (jobIds.length === 0) return new Set();
  const rows = await db.selectFrom('assets').select('storage_key').where('job_id', 'in', jobIds).execute();
  return new Set(rows.map((row) => row.storage_key));
}

/** The storage keys of these jobs' results, or of all a user's results. */
export async function storageKeysOf(db: Kysely<Database>, of: { jobIds: string[] } | { userId: string }): Promise<string[]> {
  if ('jobIds' in of && of.jobIds.length === 0) return [];
  const query = db.selectFrom('assets').select('storage_key');
  const rows = await ('jobIds' in of ? query.where('job_id', 'in', of.jobIds) : query.where('user_id', '=', of.userId)).execute();
  return rows.map((row) => row.storage_key);
}

export async function deleteAssetRows(db: Kysely<Database>, of: { jobIds: string[] } | { userId: string }): Promise<void> {
  if ('jobIds' in of && of.jobIds.length === 0) return;
  const query = db.deleteFrom('assets');
  await ('jobIds' in of ? query.where('job_id', 'in', of.jobIds) : query.where('user_id', '=', of.userId)).execute();
}
