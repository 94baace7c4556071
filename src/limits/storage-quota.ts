import { sql, type Kysely, type Transaction } from 'kysely';
import { storedBytes } from '../assets/store.js';
import type { Store } from '../db/database.js';
import type { Database } from '../db/schema.js';
import { ResultRefused, type ResultQuota } from '../production/worker.js';
import { findStorageOverride } from './quota-store.js';

export interface StorageView {
  used_bytes: number;
  limit_bytes: number;
  /** the admin's override; null = the configured default */
  override_bytes: number | null;
  default_bytes: number;
}

/**
 * The bytes of results a user may keep: the configured default unless an admin set an override.
 *
 * Checked on submission (lifecycle refuses a job while the stored results fill the quota), before
 * each result is uploaded (`checkResults`, once its stored size is known), and when a job's results
 * are committed (`admitResults`, in the completing transaction): jobs finishing at once may all
 * pass the check before upload, so the one at commit is the one that counts. On PostgreSQL it first
 * takes a per-user advisory transaction lock, so jobs finishing at once on any number of workers
 * count one after the other; on SQLite one write transaction runs at a time anyway.
 */
export class StorageQuota implements ResultQuota {
  constructor(
    private readonly store: Store,
    private readonly defaultBytes: number,
  ) {}

  /** `db`: a transaction to read in (SQLite has one connection: a read outside a running transaction would wait for it) */
  async usage(userId: string, db: Kysely<Database> = this.store.db): Promise<StorageView> {
    const [used, override] = await Promise.all([storedBytes(db, userId), findStorageOverride(db, userId)]);
    return { used_bytes: used, limit_bytes: override ?? this.defaultBytes, override_bytes: override, default_bytes: this.defaultBytes };
  }

  /** Refuses results of `bytes` that would take the user's stored results past their quota, in `trx` which commits them. */
  async admitResults(trx: Transaction<Database>, userId: string, bytes: number): Promise<void> {
    if (this.store.dialect === 'postgres') {
      await sql`select pg_advisory_xact_lock(hashtextextended(${`celforge:storage:${userId}`}, 0))`.execute(trx);
    }
    await this.checkResults(userId, bytes, trx);
  }

  /** The same refusal without the lock: before results are uploaded, so that none is uploaded in vain. */
  async checkResults(userId: string, bytes: number, db: Kysely<Database> = this.store.db): Promise<void> {
    const view = await this.usage(userId, db);
    if (view.used_bytes + bytes > view.limit_bytes) {
      throw new ResultRefused(
        `The result takes ${bytes} bytes; with the ${view.used_bytes} bytes of your stored results that passes your storage quota of ${view.limit_bytes} bytes, so it was not kept. Delete some jobs to make room, then submit again.`,
      );
    }
  }
}
