import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database, JobsTable } from '../../src/db/schema.js';

/** Puts a job row straight into the store (no queue, no worker): a queued image job unless `job` says otherwise. */
export async function insertJob(db: Kysely<Database>, job: Partial<JobsTable> & { user_id: string; created_at: string }): Promise<string> {
  const id = job.id ?? randomUUID();
  await db
    .insertInto('jobs')
    .values({
      id,
      type: 'image',
      status: 'queued',
      prompt: 'a quiet harbour at dawn',
      negative_prompt: '',
      params: '{}',
      progress: 0,
      error: null,
      idempotency_key: null,
      request_hash: null,
      attempts: 0,
      locked_by: null,
      locked_until: null,
      run_after: null,
      visibility: null,
      published_at: null,
      updated_at: job.created_at,
      started_at: null,
      finished_at: null,
      ...job,
    })
    .execute();
  return id;
}
