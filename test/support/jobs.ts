import type { Kysely } from 'kysely';
import type { Database, JobsTable } from '../../src/db/schema.js';
import { newJobRow } from '../../src/production/store.js';

/** Puts a job row straight into the store (no queue, no worker): a queued image job unless `job` says otherwise. */
export async function insertJob(db: Kysely<Database>, job: Partial<JobsTable> & { user_id: string; created_at: string }): Promise<string> {
  const row = { ...newJobRow({ user_id: job.user_id, type: 'image', prompt: 'a quiet harbour at dawn' }, job.created_at), ...job };
  await db.insertInto('jobs').values(row).execute();
  return row.id;
}
