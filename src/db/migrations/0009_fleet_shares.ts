import type { Kysely } from 'kysely';

/**
 * Each user's share of the GPU fleet: an admin-set weight and cap on jobs running at once, and the
 * user's recent GPU use (milliseconds, decaying with a half-life from `usage_at`) that fair-share
 * scheduling reads.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('fleet_shares')
    .addColumn('user_id', 'text', (c) => c.primaryKey().references('users.id').onDelete('cascade'))
    .addColumn('weight', 'double precision', (c) => c.notNull().defaultTo(1))
    .addColumn('max_running', 'integer')
    .addColumn('usage_ms', 'double precision', (c) => c.notNull().defaultTo(0))
    .addColumn('usage_at', 'text')
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('updated_by', 'text')
    .execute();
  await db.schema.createIndex('jobs_queued_by_user').on('jobs').columns(['status', 'user_id', 'created_at']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('jobs_queued_by_user').ifExists().execute();
  await db.schema.dropTable('fleet_shares').ifExists().execute();
}
