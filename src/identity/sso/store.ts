import type { Insertable, Kysely, Selectable } from 'kysely';
import type { Database, SsoAttemptsTable, SsoLinksTable, SsoSessionsTable } from '../../db/schema.js';

export type SsoLinkRow = Selectable<SsoLinksTable>;
export type SsoAttemptRow = Selectable<SsoAttemptsTable>;

const changed = (result: { numUpdatedRows: bigint }[] | { numUpdatedRows: bigint } | { numDeletedRows: bigint }[]) => {
  const first = Array.isArray(result) ? result[0]! : result;
  return Number('numUpdatedRows' in first ? first.numUpdatedRows : first.numDeletedRows);
};

// ---- links

export function findLink(db: Kysely<Database>, issuer: string, subject: string): Promise<SsoLinkRow | undefined> {
  return db.selectFrom('sso_links').selectAll().where('issuer', '=', issuer).where('subject', '=', subject).executeTakeFirst();
}

export function listLinks(db: Kysely<Database>, userId: string): Promise<SsoLinkRow[]> {
  return db.selectFrom('sso_links').selectAll().where('user_id', '=', userId).orderBy('created_at').execute();
}

export function insertLink(db: Kysely<Database>, link: Insertable<SsoLinksTable>): Promise<unknown> {
  return db.insertInto('sso_links').values(link).execute();
}

export async function deleteLink(db: Kysely<Database>, id: string, userId: string): Promise<boolean> {
  return changed(await db.deleteFrom('sso_links').where('id', '=', id).where('user_id', '=', userId).execute()) === 1;
}

export async function touchLink(db: Kysely<Database>, id: string, now: string): Promise<void> {
  await db.updateTable('sso_links').set({ last_used_at: now }).where('id', '=', id).execute();
}

// ---- attempts

export async function insertAttempt(db: Kysely<Database>, attempt: Insertable<SsoAttemptsTable>, now: string): Promise<void> {
  // attempts nobody finished are of no use once expired
  await db.deleteFrom('sso_attempts').where('expires_at', '<', now).execute();
  await db.insertInto('sso_attempts').values(attempt).execute();
}

export function findAttempt(db: Kysely<Database>, stateHash: string): Promise<SsoAttemptRow | undefined> {
  return db.selectFrom('sso_attempts').selectAll().where('state_hash', '=', stateHash).executeTakeFirst();
}

/** Spends an attempt; false when it was spent already (a replayed callback, or a race). */
export async function spendAttempt(db: Kysely<Database>, stateHash: string, now: string): Promise<boolean> {
  const result = await db.updateTable('sso_attempts').set({ used_at: now }).where('state_hash', '=', stateHash).where('used_at', 'is', null).execute();
  return changed(result) === 1;
}

// ---- provider sessions

export function insertSsoSession(db: Kysely<Database>, row: Insertable<SsoSessionsTable>): Promise<unknown> {
  return db.insertInto('sso_sessions').values(row).execute();
}

export function findSsoSession(db: Kysely<Database>, sessionId: string) {
  return db.selectFrom('sso_sessions').selectAll().where('session_id', '=', sessionId).executeTakeFirst();
}

/** Live Celforge sessions opened through the provider session a logout token names (by `sub`, `sid` or both). */
export function liveSessionsFor(db: Kysely<Database>, issuer: string, match: { subject?: string; sid?: string }) {
  let query = db
    .selectFrom('sso_sessions')
    .innerJoin('sessions', 'sessions.id', 'sso_sessions.session_id')
    .select(['sessions.id', 'sessions.user_id'])
    .where('sso_sessions.issuer', '=', issuer)
    .where('sessions.revoked_at', 'is', null);
  if (match.subject !== undefined) query = query.where('sso_sessions.subject', '=', match.subject);
  if (match.sid !== undefined) query = query.where('sso_sessions.sid', '=', match.sid);
  return query.execute();
}
