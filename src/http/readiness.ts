import { randomUUID } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import { Gauge, type Registry } from 'prom-client';
import { isStoreReady, type Store } from '../db/database.js';

export const READINESS_CHECKS = ['store', 'store_writable', 'assets_writable', 'dependencies'] as const;
export type ReadinessCheck = (typeof READINESS_CHECKS)[number];

export interface ReadinessResult {
  ready: boolean;
  checks: Record<ReadinessCheck, boolean>;
}

/** One answer serves every `/ready` and scrape within this long: the probes write to the disk. */
const CACHE_MS = 1000;
/** A probe writes one page: a disk with less room than that takes no result either. */
const PROBE_BYTES = 4096;

/** Writes, syncs and removes a small file in `dir`: false when the disk is full or read-only. */
async function canWrite(dir: string): Promise<boolean> {
  const file = path.join(dir, `.ready-${randomUUID()}.probe`);
  try {
    const handle = await open(file, 'w', 0o600);
    try {
      await handle.write(Buffer.alloc(PROBE_BYTES));
      await handle.sync();
    } finally {
      await handle.close();
    }
    return true;
  } catch {
    return false;
  } finally {
    await rm(file, { force: true }).catch(() => {});
  }
}

/** PostgreSQL refuses writes on a standby or a database set read-only; SQLite writes beside its file. */
async function storeWritable(store: Store, dataDir: string): Promise<boolean> {
  if (store.dialect === 'sqlite') return canWrite(dataDir);
  try {
    const { rows } = await sql<{ ro: string }>`select current_setting('transaction_read_only') as ro`.execute(store.db);
    return rows[0]?.ro === 'off';
  } catch {
    return false;
  }
}

/**
 * Whether this instance can do its work: the store answers and takes writes, the asset directory
 * takes files, and the dependencies it trusts (revocations) are up. A full or read-only data dir
 * makes it not ready, so a balancer stops sending it jobs that would all fail.
 */
export class Readiness {
  #last: { at: number; result: Promise<ReadinessResult> } | null = null;

  constructor(
    private readonly options: { store: Store; dataDir: string; assetsDir: string | null; dependenciesReady?: () => boolean },
  ) {}

  check(): Promise<ReadinessResult> {
    if (this.#last && Date.now() - this.#last.at < CACHE_MS) return this.#last.result;
    const result = this.#run();
    this.#last = { at: Date.now(), result };
    return result;
  }

  async #run(): Promise<ReadinessResult> {
    const { store, dataDir, assetsDir, dependenciesReady } = this.options;
    const reachable = await isStoreReady(store);
    const [writable, assets] = await Promise.all([reachable ? storeWritable(store, dataDir) : false, assetsDir ? canWrite(assetsDir) : true]);
    const checks = { store: reachable, store_writable: writable, assets_writable: assets, dependencies: dependenciesReady?.() ?? true };
    return { ready: Object.values(checks).every(Boolean), checks };
  }
}

/** `celforge_ready{check}`: 1 when that readiness check passes, read at scrape time. */
export function readinessMetric(registry: Registry, readiness: Readiness): void {
  new Gauge({
    name: 'celforge_ready',
    help: 'Readiness checks of this instance (1 passes, 0 fails): store, store_writable, assets_writable, dependencies',
    labelNames: ['check'],
    registers: [registry],
    async collect() {
      const { checks } = await readiness.check();
      for (const check of READINESS_CHECKS) this.set({ check }, checks[check] ? 1 : 0);
    },
  });
}
