import type { Kysely } from 'kysely';

/**
 * A job remembers a digest of the request that made it, so a retry with the same Idempotency-Key
 * and another body is told apart from a true retry (which gets the original job back).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('jobs').addColumn('request_hash', 'text').execute();
  await db.schema.createIndex('jobs_finished').on('jobs').columns(['status', 'finished_at']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('jobs_finished').ifExists().execute();
  await db.schema.alterTable('jobs').dropColumn('request_hash').execute();
}
