import type { Kysely } from 'kysely';

/** Lookups the identity service makes: recent revocations on start, recent user changes. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('sessions_revoked_at').on('sessions').column('revoked_at').execute();
  await db.schema.createIndex('users_updated_at').on('users').column('updated_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const name of ['users_updated_at', 'sessions_revoked_at']) {
    await db.schema.dropIndex(name).ifExists().execute();
  }
}
