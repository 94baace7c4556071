import { Gauge, type Registry } from 'prom-client';
import type { Store } from '../db/database.js';
import { JOB_STATUSES } from '../db/schema.js';
import { countByStatus, countQueued } from './store.js';

/** Job figures on /metrics, read from the store at scrape time. */
export function registerJobMetrics(registry: Registry, store: Store): void {
  const registers = [registry];
  new Gauge({
    name: 'celforge_jobs',
    help: 'Jobs in the store by state',
    labelNames: ['state'],
    registers,
    async collect() {
      const counts = await countByStatus(store.db);
      for (const state of JOB_STATUSES) this.set({ state }, counts.get(state) ?? 0);
    },
  });
  new Gauge({
    name: 'celforge_queue_depth',
    help: 'Jobs waiting to run (queued)',
    registers,
    async collect() {
      this.set(await countQueued(store.db));
    },
  });
}
