import { randomUUID } from 'node:crypto';
import { sql, type Insertable, type Kysely, type Selectable, type Updateable } from 'kysely';
import type { Database, RefreshTokensTable, SessionsTable, UsersTable } from '../db/schema.js';

export type UserRow = Selectable<UsersTable>;
export type SessionRow = Selectable<SessionsTable>;
export type RefreshTokenRow = Selectable<RefreshTokensTable>;

const changed = (result: { numUpdatedRows: bigint }[] | { numUpdatedRows: bigint }) =>
  Number((Array.isArray(result) ? result[0]! : result).numUpdatedRows);

// ---- users

/** A new account's row: enabled, without a second factor. */
export function newUserRow(fields: Pick<UserRow, 'email' | 'password_hash' | 'role'>, now = new Date().toISOString()): UserRow {
  return { id: randomUUID(), ...fields, disabled: 0, totp_secret: null, totp_enabled: 0, totp_last_step: null, created_at: now, updated_at: now };
}

export function insertUser(db: Kysely<Database>, user: UserRow): Promise<unknown> {
  return db.insertInto('users').values(user).execute();
}

export function findUserById(db: Kysely<Database>, id: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

export function findUserByEmail(db: Kysely<Database>, email: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirst();
}

export async function userExists(db: Kysely<Database>, userId: string): Promise<boolean> {
  const row = await db.selectFrom('users').select('id').where('id', '=', userId).executeTakeFirst();
  return row !== undefined;
}

/** The role of each of these users (unknown ids are left out). */
export async function rolesOf(db: Kysely<Database>, ids: string[]): Promise<Map<string, UserRow['role']>> {
  if (ids.length === 0) return new Map();
  const rows = await db.selectFrom('users').select(['id', 'role']).where('id', 'in', ids).execute();
  return new Map(rows.map((row) => [row.id, row.role]));
}

export async function countUsers(db: Kysely<Database>): Promise<number> {
  const row = await db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

/** A page of users ordered by e-mail, after the given e-mail (keyset paging). */
export function listUsers(db: Kysely<Database>, options: { after?: string; limit: number; search?: string }): Promise<UserRow[]> {
  let query = db.selectFrom('users').selectAll().orderBy('email').limit(options.limit);
  if (options.after !== undefined) query = query.where('email', '>', options.after);
  // e-mails are stored lower-case; LIKE wildcards in the search are taken literally
  if (options.search) {
    const pattern = `%${options.search.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    query = query.where(sql<boolean>`email like ${pattern} escape '\\'`);
  }
  return query.execute();
}

export async function updateUser(db: Kysely<Database>, id: string, values: Updateable<UsersTable>): Promise<boolean> {
  return changed(await db.updateTable('users').set(values).where('id', '=', id).execute()) > 0;
}

/** Accepts a TOTP step only when it is later than the last one: two uses of one code cannot both win. */
export async function claimTotpStep(db: Kysely<Database>, userId: string, step: number, now: string): Promise<boolean> {
  const result = await db
    .updateTable('users')
    .set({ totp_last_step: step, updated_at: now })
    .where('id', '=', userId)
    .where((eb) => eb.or([eb('totp_last_step', 'is', null), eb('totp_last_step', '<', step)]))
    .execute();
  return changed(result) === 1;
}

/** Users changed since `since`: their current role and state, for the revocation view. */
export function usersChangedSince(db: Kysely<Database>, since: string) {
  return db.selectFrom('users').select(['id', 'role', 'disabled', 'updated_at']).where('updated_at', '>=', since).execute();
}

// ---- recovery codes

export async function replaceRecoveryCodes(db: Kysely<Database>, userId: string, hashes: string[]): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
    if (hashes.length) {
      await trx
        .insertInto('recovery_codes')
        .values(hashes.map((code_hash) => ({ user_id: userId, code_hash, used_at: null })))
        .execute();
    }
  });
}

export async function deleteRecoveryCodes(db: Kysely<Database>, userId: string): Promise<void> {
  await db.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
}

/** Spends a recovery code; false when it is unknown or already spent. */
export async function useRecoveryCode(db: Kysely<Database>, userId: string, codeHash: string, now: string): Promise<boolean> {
  const result = await db
    .updateTable('recovery_codes')
    .set({ used_at: now })
    .where('user_id', '=', userId)
    .where('code_hash', '=', codeHash)
    .where('used_at', 'is', null)
    .execute();
  return changed(result) === 1;
}

/** How many recovery codes are still unspent. */
export async function countUnusedRecoveryCodes(db: Kysely<Database>, userId: string): Promise<number> {
  const row = await db
    .selectFrom('recovery_codes')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('user_id', '=', userId)
    .where('used_at', 'is', null)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

// ---- sessions

export function insertSession(db: Kysely<Database>, session: Insertable<SessionsTable>): Promise<unknown> {
  return db.insertInto('sessions').values(session).execute();
}

export function findSession(db: Kysely<Database>, id: string): Promise<SessionRow | undefined> {
  return db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst();
}

export function listLiveSessions(db: Kysely<Database>, userId: string, now: string): Promise<SessionRow[]> {
  return db
    .selectFrom('sessions')
    .selectAll()
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', now)
    .orderBy('created_at', 'desc')
    .limit(200)
    .execute();
}

/** Records a second factor verified in a session now, and how (`totp`, `passkey`). */
export async function setSessionMfa(db: Kysely<Database>, id: string, at: string, via: 'totp' | 'passkey'): Promise<void> {
  await db.updateTable('sessions').set({ mfa_at: at, mfa_via: via }).where('id', '=', id).execute();
}

/** Ends one live session; false when it is not live (or not that user's). */
export async function revokeSession(
  db: Kysely<Database>,
  id: string,
  options: { userId?: string; reason: string; now: string },
): Promise<boolean> {
  let query = db
    .updateTable('sessions')
    .set({ revoked_at: options.now, revoked_reason: options.reason })
    .where('id', '=', id)
    .where('revoked_at', 'is', null);
  if (options.userId !== undefined) query = query.where('user_id', '=', options.userId);
  return changed(await query.execute()) === 1;
}

/** Ends every live session of a user (but `except`); returns the ids ended. */
export async function revokeUserSessions(
  db: Kysely<Database>,
  userId: string,
  options: { except?: string; reason: string; now: string },
): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    let select = trx.selectFrom('sessions').select('id').where('user_id', '=', userId).where('revoked_at', 'is', null);
    if (options.except !== undefined) select = select.where('id', '!=', options.except);
    const ids = (await select.execute()).map((row) => row.id);
    if (ids.length) {
      await trx
        .updateTable('sessions')
        .set({ revoked_at: options.now, revoked_reason: options.reason })
        .where('id', 'in', ids)
        .where('revoked_at', 'is', null)
        .execute();
    }
    return ids;
  });
}

/** Sessions revoked since `since`, for the revocation view after a start or reconnect. */
export function sessionsRevokedSince(db: Kysely<Database>, since: string) {
  return db.selectFrom('sessions').select(['id', 'user_id', 'revoked_at']).where('revoked_at', '>=', since).execute();
}

// ---- refresh tokens

export function insertRefreshToken(db: Kysely<Database>, row: RefreshTokenRow): Promise<unknown> {
  return db.insertInto('refresh_tokens').values(row).execute();
}

export type RefreshTokenLookup = NonNullable<Awaited<ReturnType<typeof findRefreshToken>>>;

export function findRefreshToken(db: Kysely<Database>, tokenHash: string) {
  return db
    .selectFrom('refresh_tokens')
    .innerJoin('sessions', 'sessions.id', 'refresh_tokens.session_id')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select([
      'refresh_tokens.session_id',
      'refresh_tokens.expires_at',
      'refresh_tokens.used_at',
      'sessions.user_id',
      'sessions.revoked_at',
      'sessions.expires_at as session_expires_at',
      'users.email',
      'users.role',
      'users.disabled',
    ])
    .where('refresh_tokens.token_hash', '=', tokenHash)
    .executeTakeFirst();
}

/**
 * Spends a refresh token and stores its successor, in one transaction: false, and nothing stored,
 * when another request spent it first. The successor is created the instant its predecessor is spent.
 */
export function rotateRefreshToken(db: Kysely<Database>, spentHash: string, successor: RefreshTokenRow): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    if (!(await spendRefreshToken(trx, spentHash, successor.created_at))) return false;
    await insertRefreshToken(trx, successor);
    return true;
  });
}

/**
 * A retried rotation: withdraws the family's live token and stores a new one in its place, in one
 * transaction; false, and nothing changed, when the live token was spent meanwhile. A withdrawn
 * token is marked spent and expired at the same instant, which tells it from a rotated one (spent
 * before its expiry) for good.
 */
export function replaceLiveRefreshToken(db: Kysely<Database>, liveHash: string, replacement: RefreshTokenRow): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const now = replacement.created_at;
    const withdrawn = await trx
      .updateTable('refresh_tokens')
      .set({ used_at: now, expires_at: now })
      .where('token_hash', '=', liveHash)
      .where('used_at', 'is', null)
      .execute();
    if (changed(withdrawn) !== 1) return false;
    await insertRefreshToken(trx, replacement);
    return true;
  });
}

/** The first tokens of a session created at or after `since` (a rotation's instant), oldest first. */
export function refreshTokensSince(db: Kysely<Database>, sessionId: string, since: string, limit = 3) {
  return db
    .selectFrom('refresh_tokens')
    .select(['token_hash', 'created_at', 'expires_at', 'used_at'])
    .where('session_id', '=', sessionId)
    .where('created_at', '>=', since)
    .orderBy('created_at')
    .orderBy('token_hash')
    .limit(limit)
    .execute();
}

/** Spends a refresh token; false when another request spent it first. */
export async function spendRefreshToken(db: Kysely<Database>, tokenHash: string, now: string): Promise<boolean> {
  const result = await db
    .updateTable('refresh_tokens')
    .set({ used_at: now })
    .where('token_hash', '=', tokenHash)
    .where('used_at', 'is', null)
    .execute();
  return changed(result) === 1;
}

export async function touchSession(db: Kysely<Database>, id: string, now: string): Promise<void> {
  await db.updateTable('sessions').set({ last_seen_at: now }).where('id', '=', id).execute();
}

/**
 * What deleting an account leaves of the user: sessions (refresh tokens go with them), recovery
 * codes, passkeys and single sign-on links are deleted; the user row stays as a disabled tombstone without email or password, so the
 * audit trail's actor ids still name someone and every instance (also one started later) refuses
 * the user's tokens.
 */
export async function tombstoneUser(db: Kysely<Database>, userId: string, now: string): Promise<void> {
  const sessions = db.selectFrom('sessions').select('id').where('user_id', '=', userId);
  await db.deleteFrom('sso_sessions').where('session_id', 'in', sessions).execute();
  await db.deleteFrom('refresh_tokens').where('session_id', 'in', sessions).execute();
  await db.deleteFrom('sessions').where('user_id', '=', userId).execute();
  await db.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
  await db.deleteFrom('passkeys').where('user_id', '=', userId).execute();
  await db.deleteFrom('webauthn_challenges').where('user_id', '=', userId).execute();
  await db.deleteFrom('sso_links').where('user_id', '=', userId).execute();
  await db.deleteFrom('sso_attempts').where('user_id', '=', userId).execute();
  await db
    .updateTable('users')
    .set({ email: `deleted-${userId}@deleted.invalid`, password_hash: '!', disabled: 1, totp_secret: null, totp_enabled: 0, totp_last_step: null, updated_at: now })
    .where('id', '=', userId)
    .execute();
}
