import type { Kysely } from 'kysely';

/** Per-user overrides of the job quotas; a null column keeps the configured default. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('user_quotas')
    .addColumn('user_id', 'text', (c) => c.primaryKey().references('users.id').onDelete('cascade'))
    .addColumn('active_jobs', 'integer')
    .addColumn('jobs_per_day', 'integer')
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('updated_by', 'text')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('user_quotas').ifExists().execute();
}
