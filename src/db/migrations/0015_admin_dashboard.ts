import type { Kysely } from 'kysely';

/**
 * The admin dashboard reads jobs by creation and start time, sessions by last use and refusals by
 * action over the last day: indexes so those reads stay small on a large store.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('jobs_created').on('jobs').column('created_at').execute();
  await db.schema.createIndex('jobs_started').on('jobs').column('started_at').execute();
  await db.schema.createIndex('sessions_last_seen').on('sessions').column('last_seen_at').execute();
  await db.schema.createIndex('audit_log_action_at').on('audit_log').columns(['action', 'at']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const name of ['audit_log_action_at', 'sessions_last_seen', 'jobs_started', 'jobs_created']) {
    await db.schema.dropIndex(name).ifExists().execute();
  }
}
