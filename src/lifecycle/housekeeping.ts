import type { FastifyBaseLogger } from 'fastify';
import type { AssetSettings } from '../config/assets.js';
import { ownerOfKey, STALE_TEMP_MS, type AssetStorage } from '../assets/storage.js';
import type { Store } from '../db/database.js';
import { removeObjects } from './service.js';
import { knownStorageKeys } from '../assets/store.js';
import { expiredEndedJobs } from '../production/store.js';
import { deleteJobRows } from './store.js';

export interface SweepReport {
  /** temporary files and unfinished uploads of killed writers */
  leftovers: number;
  /** objects no asset row names (a job deleted while its objects could not be removed, a crash between write and commit) */
  orphans: number;
  /** failed and canceled jobs past the retention */
  expiredJobs: number;
}

const BATCH = 500;

/**
 * The periodic clean-up a worker runs: what killed writers left, objects without an asset row,
 * and failed or canceled jobs past `CELFORGE_FAILED_JOB_RETENTION_DAYS`. Objects younger than
 * `graceMs` are left alone: a worker may have written them and not yet committed the job.
 * Several workers may sweep at once; every step is idempotent.
 */
export class Housekeeping {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deps: { store: Store; storage: AssetStorage; settings: AssetSettings; log: FastifyBaseLogger },
  ) {}

  async sweep(options: { graceMs?: number; now?: Date } = {}): Promise<SweepReport> {
    const graceMs = options.graceMs ?? STALE_TEMP_MS;
    const now = options.now ?? new Date();
    const leftovers = await this.deps.storage.removeStaleTemps(graceMs);
    const orphans = await this.#removeOrphans(now.getTime() - graceMs);
    let expiredJobs = 0;
    if (this.deps.settings.failedRetentionDays > 0) {
      const before = new Date(now.getTime() - this.deps.settings.failedRetentionDays * 86_400_000).toISOString();
      for (;;) {
        const ids = await expiredEndedJobs(this.deps.store.db, before, BATCH);
        if (ids.length === 0) break;
        await removeObjects(this.deps.storage, await deleteJobRows(this.deps.store.db, ids), this.deps.log);
        expiredJobs += ids.length;
      }
    }
    return { leftovers, orphans, expiredJobs };
  }

  async #removeOrphans(olderThan: number): Promise<number> {
    let removed = 0;
    let batch: { key: string; stem: string; storageKey: string | null }[] = [];
    const flush = async () => {
      const jobIds = [...new Set(batch.map((item) => item.stem.slice(0, 36)))];
      const known = await knownStorageKeys(this.deps.store.db, jobIds);
      const knownStems = new Set([...known].map((key) => key.replace(/\.[a-z0-9]+$/, '')));
      for (const item of batch) {
        const kept = item.storageKey ? known.has(item.storageKey) : knownStems.has(item.stem);
        if (kept) continue;
        await this.deps.storage.objects.remove(item.key);
        removed++;
      }
      batch = [];
    };
    for await (const object of this.deps.storage.objects.list()) {
      const owner = ownerOfKey(object.key);
      if (!owner || object.modifiedAt.getTime() >= olderThan) continue;
      batch.push({ key: object.key, stem: owner.stem, storageKey: owner.storageKey });
      if (batch.length >= BATCH) await flush();
    }
    if (batch.length > 0) await flush();
    return removed;
  }

  /** Sweeps every `CELFORGE_ASSET_SWEEP_SECONDS` from now on. */
  start(): void {
    const run = () => {
      this.#running = this.sweep()
        .then((report) => {
          if (report.leftovers + report.orphans + report.expiredJobs > 0) this.deps.log.info(report, 'asset sweep');
        })
        .catch((err: unknown) => this.deps.log.warn({ err }, 'asset sweep failed'));
    };
    this.#timer = setInterval(run, this.deps.settings.sweepIntervalSeconds * 1000).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }
}

/** The clean-up a worker of this store runs over the storage it writes (createProduction's `housekeeping`). */
export function housekeepingFor(store: Store, settings: AssetSettings, log: FastifyBaseLogger) {
  return (storage: AssetStorage) => new Housekeeping({ store, storage, settings, log });
}
