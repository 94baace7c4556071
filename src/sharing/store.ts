import type { Kysely, Selectable } from 'kysely';
import type { Database, ShareLinksTable } from '../db/schema.js';

export type ShareLinkRow = Selectable<ShareLinksTable>;

export function insertShareLink(db: Kysely<Database>, row: ShareLinkRow): Promise<unknown> {
  return db.insertInto('share_links').values(row).execute();
}

export function listShareLinks(db: Kysely<Database>, jobId: string): Promise<ShareLinkRow[]> {
  return db.selectFrom('share_links').selectAll().where('job_id', '=', jobId).orderBy('created_at', 'desc').orderBy('id').execute();
}

/** A link that opens now: not revoked, not expired. */
export function findLiveShareLink(db: Kysely<Database>, tokenHash: string, now: string): Promise<ShareLinkRow | undefined> {
  return db
    .selectFrom('share_links')
    .selectAll()
    .where('token_hash', '=', tokenHash)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
}

export async function countOpening(db: Kysely<Database>, id: string, now: string): Promise<void> {
  await db
    .updateTable('share_links')
    .set((eb) => ({ open_count: eb('open_count', '+', 1), last_opened_at: now }))
    .where('id', '=', id)
    .execute();
}

export async function revokeShareLink(db: Kysely<Database>, id: string, userId: string, now: string): Promise<ShareLinkRow | undefined> {
  const row = await db.selectFrom('share_links').selectAll().where('id', '=', id).where('user_id', '=', userId).executeTakeFirst();
  if (!row) return undefined;
  await db.updateTable('share_links').set({ revoked_at: now }).where('id', '=', id).where('revoked_at', 'is', null).execute();
  return row;
}

/** Deletes the links of these jobs, or all a user's links (deleting jobs or the account). */
export async function deleteShareLinks(db: Kysely<Database>, of: { jobIds: string[] } | { userId: string }): Promise<void> {
  if ('jobIds' in of && of.jobIds.length === 0) return;
  const query = db.deleteFrom('share_links');
  await ('jobIds' in of ? query.where('job_id', 'in', of.jobIds) : query.where('user_id', '=', of.userId)).execute();
}
