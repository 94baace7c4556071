import { sql, type Kysely, type Selectable } from 'kysely';
import type { Store } from '../../db/database.js';
import type { ApiKeysTable, Database } from '../../db/schema.js';

export type ApiKeyRow = Selectable<ApiKeysTable>;

/** What authentication needs: the key row and its user's current state. */
export interface ApiKeyState {
  id: string;
  user_id: string;
  key_hash: string;
  scopes: string;
  signing_secret: string | null;
  expires_at: string | null;
  revoked_at: string | null;
  email: string;
  role: 'admin' | 'user';
  disabled: number;
  /** 1 when the user has a second factor: TOTP or a passkey */
  second_factor: number;
}

class OverCap extends Error {}

/**
 * Inserts the key unless its user would then hold more than `cap` live keys (false: nothing
 * inserted). Insert and count share one write transaction, so concurrent creates cannot both slip
 * under the cap. PostgreSQL: the user's row is locked first (`for no key update`: it queues this
 * user's creates, not other users', and leaves foreign-key checks on the row free). SQLite runs
 * one write transaction at a time; the insert comes first so the write lock is held before the
 * count, also against another process on the same file.
 */
export async function insertApiKeyWithinCap(store: Store, row: ApiKeyRow, cap: number, now: string): Promise<boolean> {
  try {
    await store.db.transaction().execute(async (trx) => {
      if (store.dialect === 'postgres') {
        await trx.selectFrom('users').select('id').where('id', '=', row.user_id).forNoKeyUpdate().execute();
      }
      await trx.insertInto('api_keys').values(row).execute();
      if ((await countLiveApiKeys(trx, row.user_id, now)) > cap) throw new OverCap();
    });
    return true;
  } catch (error) {
    if (error instanceof OverCap) return false;
    throw error;
  }
}

export function findApiKeyState(db: Kysely<Database>, id: string): Promise<ApiKeyState | undefined> {
  return db
    .selectFrom('api_keys')
    .innerJoin('users', 'users.id', 'api_keys.user_id')
    .select([
      'api_keys.id',
      'api_keys.user_id',
      'api_keys.key_hash',
      'api_keys.scopes',
      'api_keys.signing_secret',
      'api_keys.expires_at',
      'api_keys.revoked_at',
      'users.email',
      'users.role',
      'users.disabled',
      sql<number>`case when users.totp_enabled = 1 or exists (select 1 from passkeys where passkeys.user_id = users.id) then 1 else 0 end`.as('second_factor'),
    ])
    .where('api_keys.id', '=', id)
    .executeTakeFirst();
}

/** The user's keys that are not revoked, newest first (at most 100: 25 live ones and recently expired ones). */
export function listApiKeys(db: Kysely<Database>, userId: string) {
  return db
    .selectFrom('api_keys')
    .select(['id', 'name', 'scopes', 'created_at', 'expires_at', 'last_used_at'])
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .orderBy('created_at', 'desc')
    .orderBy('id')
    .limit(100)
    .execute();
}

/** Keys that still work (not revoked, not expired). */
export async function countLiveApiKeys(db: Kysely<Database>, userId: string, now: string): Promise<number> {
  const row = await db
    .selectFrom('api_keys')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Revokes one of the user's live keys; false when there is no such key (or not theirs). */
export async function revokeApiKey(db: Kysely<Database>, id: string, userId: string, now: string): Promise<boolean> {
  const result = await db
    .updateTable('api_keys')
    .set({ revoked_at: now })
    .where('id', '=', id)
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

export function touchApiKey(db: Kysely<Database>, id: string, now: string): Promise<unknown> {
  return db.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', id).execute();
}

export async function deleteUserApiKeys(db: Kysely<Database>, userId: string): Promise<void> {
  await db.deleteFrom('api_keys').where('user_id', '=', userId).execute();
}
