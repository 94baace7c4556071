import type { Kysely } from 'kysely';

/**
 * Share links (one work, opened without an account; only the token's SHA-256 is kept) and the
 * per-user storage quota override.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('share_links')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('revoked_at', 'text')
    .addColumn('open_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('last_opened_at', 'text')
    .execute();
  await db.schema.createIndex('share_links_job').on('share_links').column('job_id').execute();
  await db.schema.alterTable('user_quotas').addColumn('storage_bytes', 'bigint').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('user_quotas').dropColumn('storage_bytes').execute();
  await db.schema.dropTable('share_links').ifExists().execute();
}
