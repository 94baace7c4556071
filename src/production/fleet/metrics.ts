import { Gauge, type Registry } from 'prom-client';
import type { Store } from '../../db/database.js';
import type { Renderer } from '../../renderers/renderer.js';
import { gpuSecondsByUser } from './fair-share.js';

/** Only the heaviest users get a series: a bounded label set. */
const TOP_USERS = 50;

/** The fleet's figures on /metrics, read at scrape time: per backend, and GPU use per user. */
export function registerFleetMetrics(registry: Registry, renderer: Renderer, store: Store): void {
  const registers = [registry];
  const stats = () => renderer.fleetStats?.();
  new Gauge({
    name: 'celforge_backend_utilization',
    help: 'Share of wall time a renderer backend spent executing prompts, since start',
    labelNames: ['backend'],
    registers,
    collect() {
      this.reset();
      for (const b of stats()?.backends ?? []) this.set({ backend: b.id }, b.utilization);
    },
  });
  new Gauge({
    name: 'celforge_backend_idle_gap_seconds',
    help: 'Idle time of a backend between consecutive prompts (recent samples)',
    labelNames: ['backend', 'quantile'],
    registers,
    collect() {
      this.reset();
      for (const b of stats()?.backends ?? []) {
        if (b.idle_gap_ms.p50 !== null) this.set({ backend: b.id, quantile: '0.5' }, b.idle_gap_ms.p50 / 1000);
        if (b.idle_gap_ms.p99 !== null) this.set({ backend: b.id, quantile: '0.99' }, b.idle_gap_ms.p99 / 1000);
      }
    },
  });
  new Gauge({
    name: 'celforge_backend_in_flight',
    help: 'Prompts a backend holds (running and waiting) for all workers: its leases in Redis in scale-out',
    labelNames: ['backend', 'up'],
    registers,
    collect() {
      this.reset();
      for (const b of stats()?.backends ?? []) this.set({ backend: b.id, up: b.ok ? '1' : '0' }, b.in_flight);
    },
  });
  new Gauge({
    name: 'celforge_fleet_waiting',
    help: 'Jobs taken by this worker that wait for a backend slot',
    registers,
    collect() {
      this.set(stats()?.waiting ?? 0);
    },
  });
  new Gauge({
    name: 'celforge_user_gpu_seconds',
    help: 'Recent GPU seconds per user (decaying, as fair share sees them)',
    labelNames: ['user'],
    registers,
    async collect() {
      this.reset();
      for (const row of (await gpuSecondsByUser(store.db, new Date())).slice(0, TOP_USERS)) this.set({ user: row.user_id }, row.gpu_seconds);
    },
  });
}
