import type { Kysely, Selectable } from 'kysely';
import type { Database, SessionsTable, UsersTable } from '../db/schema.js';

export type UserRow = Selectable<UsersTable>;
export type SessionRow = Selectable<SessionsTable>;

export function insertUser(db: Kysely<Database>, user: UserRow): Promise<unknown> {
  return db.insertInto('users').values(user).execute();
}

export function findUserById(db: Kysely<Database>, id: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

export function findUserByEmail(db: Kysely<Database>, email: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirst();
}

export async function countUsers(db: Kysely<Database>): Promise<number> {
  const row = await db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

export function insertSession(db: Kysely<Database>, session: SessionRow): Promise<unknown> {
  return db.insertInto('sessions').values(session).execute();
}

/** The session and its user's current state, for the revocation check. */
export function findSessionState(db: Kysely<Database>, sessionId: string) {
  return db
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select(['sessions.user_id', 'sessions.revoked_at', 'sessions.expires_at', 'sessions.mfa_at', 'users.role', 'users.disabled'])
    .where('sessions.id', '=', sessionId)
    .executeTakeFirst();
}
