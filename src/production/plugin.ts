/**
 * Production: jobs from submission to result — the queue, the worker, renderers, events, fleet
 * fair-share. Owns the `jobs` and `fleet_shares` tables; gallery, sharing, lifecycle and limits ask
 * its service or `production/store.ts`.
 */
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { AssetStorage } from '../assets/storage.js';
import type { AssetSettings } from '../config/assets.js';
import type { Store } from '../db/database.js';
import type { Renderer } from '../renderers/renderer.js';
import { registerFleetMetrics } from './fleet/metrics.js';
import { fleetShareRoutes } from './fleet/routes.js';
import { registerJobMetrics } from './metrics.js';
import { productionRoutes } from './routes.js';
import { createProduction, type ProductionServices, type Sweeper } from './runtime.js';
import { ProductionService } from './service.js';

export interface Production extends ProductionServices {
  /** the rules of the job pipeline: submissions, views, cancels */
  service: ProductionService;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** the job pipeline: queue, renderer, worker, events, and its service */
    production: Production;
  }
}

export interface ProductionOptions {
  /** run the embedded job worker in this process */
  worker: boolean;
  /** a renderer to use instead of the configured one (tests) */
  renderer?: Renderer;
  /** the clean-up the worker runs (lifecycle's housekeeping) */
  housekeeping?: (store: Store, settings: AssetSettings, log: FastifyBaseLogger) => (storage: AssetStorage) => Sweeper;
}

export const production = fp(
  async (app: FastifyInstance, options: ProductionOptions) => {
    const { config, store, audit, limits, metrics } = app;
    const runtime = await createProduction(config, store, app.log, {
      worker: options.worker,
      renderer: options.renderer,
      outage: app.outage,
      bus: app.bus,
      storage: { assets: app.assets.storage, signer: app.assets.signer },
      housekeeping: options.housekeeping?.(store, config.assets, app.log),
      resultQuota: limits.storage,
    });
    const { queue, events, renderer, policy } = runtime;
    const service = new ProductionService({
      store,
      queue,
      events,
      signer: app.assets.signer,
      audit,
      renderer,
      policy,
      admit: (trx, userId) => limits.quotas.admitJob(trx, userId),
    });
    registerJobMetrics(metrics.registry, store);
    registerFleetMetrics(metrics.registry, renderer, store);
    app.decorate('production', { ...runtime, service });
    app.addHook('onReady', () => runtime.start());
    app.addHook('onClose', () => runtime.stop());
  },
  { name: 'production', dependencies: ['store', 'audit', 'observability', 'limits', 'assets'] },
);

/** `/api/anime`: submit, list, watch and cancel jobs; admin fleet shares. */
export async function productionApi(app: FastifyInstance) {
  const { service, events, policy } = app.production;
  await app.register(productionRoutes, { prefix: '/api/anime', service, events });
  await app.register(fleetShareRoutes, { prefix: '/api/anime', store: app.store, audit: app.audit, policy });
}
