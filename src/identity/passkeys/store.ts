import { sql, type Insertable, type Kysely, type Selectable } from 'kysely';
import type { Database, PasskeysTable, WebauthnChallengesTable } from '../../db/schema.js';

export type PasskeyRow = Selectable<PasskeysTable>;
export type ChallengeRow = Selectable<WebauthnChallengesTable>;

const changed = (result: { numUpdatedRows: bigint } | { numDeletedRows: bigint }) =>
  Number('numUpdatedRows' in result ? result.numUpdatedRows : result.numDeletedRows);

// ---- passkeys

export function insertPasskey(db: Kysely<Database>, row: Insertable<PasskeysTable>): Promise<unknown> {
  return db.insertInto('passkeys').values(row).execute();
}

export function listPasskeys(db: Kysely<Database>, userId: string): Promise<PasskeyRow[]> {
  return db.selectFrom('passkeys').selectAll().where('user_id', '=', userId).orderBy('created_at').orderBy('id').limit(100).execute();
}

export async function countPasskeys(db: Kysely<Database>, userId: string): Promise<number> {
  const row = await db.selectFrom('passkeys').select((eb) => eb.fn.countAll<number>().as('n')).where('user_id', '=', userId).executeTakeFirstOrThrow();
  return Number(row.n);
}

export function findPasskeyByCredentialId(db: Kysely<Database>, credentialId: string): Promise<PasskeyRow | undefined> {
  return db.selectFrom('passkeys').selectAll().where('credential_id', '=', credentialId).executeTakeFirst();
}

export async function renamePasskey(db: Kysely<Database>, userId: string, id: string, name: string): Promise<boolean> {
  return changed(await db.updateTable('passkeys').set({ name }).where('id', '=', id).where('user_id', '=', userId).executeTakeFirst()) === 1;
}

/** Deletes one of the user's passkeys; with `keepOne`, not when it is the user's last one (one statement, no check-then-act). */
export async function deletePasskey(db: Kysely<Database>, userId: string, id: string, options: { keepOne: boolean }): Promise<boolean> {
  let query = db.deleteFrom('passkeys').where('id', '=', id).where('user_id', '=', userId);
  if (options.keepOne) query = query.where(sql<number>`(select count(*) from passkeys where user_id = ${userId})`, '>', 1);
  return changed(await query.executeTakeFirst()) === 1;
}

export async function deleteUserPasskeys(db: Kysely<Database>, userId: string): Promise<number> {
  return changed(await db.deleteFrom('passkeys').where('user_id', '=', userId).executeTakeFirst());
}

/**
 * Records a use: the counter only moves forward (a concurrent use with a higher counter wins), so
 * two assertions with the same counter cannot both succeed for an authenticator that counts.
 */
export async function recordPasskeyUse(
  db: Kysely<Database>,
  id: string,
  use: { previous: number; counter: number; backedUp: boolean; at: string },
): Promise<boolean> {
  let query = db.updateTable('passkeys').set({ counter: use.counter, backed_up: use.backedUp ? 1 : 0, last_used_at: use.at }).where('id', '=', id);
  if (use.counter > 0) query = query.where('counter', '=', use.previous);
  return changed(await query.executeTakeFirst()) === 1;
}

// ---- challenges

export async function insertChallenge(db: Kysely<Database>, row: ChallengeRow): Promise<void> {
  // Expired challenges go as new ones come: the table holds only ceremonies under way.
  await db.deleteFrom('webauthn_challenges').where('expires_at', '<', row.created_at).execute();
  await db.insertInto('webauthn_challenges').values(row).execute();
}

/** Takes a challenge out of the store: whoever gets the row is the only one to use it. */
export function takeChallenge(db: Kysely<Database>, id: string): Promise<ChallengeRow | undefined> {
  return db.deleteFrom('webauthn_challenges').where('id', '=', id).returningAll().executeTakeFirst();
}
