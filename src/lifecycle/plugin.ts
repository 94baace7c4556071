/**
 * Lifecycle: storage quotas, deleting jobs and accounts, and the housekeeping sweep. Owns no table
 * of its own (its storage overrides are a column of limits' `user_quotas`); deleting an account or
 * a job spans the owners' tables in one transaction (`lifecycle/store.ts`).
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { lifecycleRoutes, storageQuota } from './routes.js';
import { LifecycleService } from './service.js';

declare module 'fastify' {
  interface FastifyInstance {
    lifecycle: LifecycleService;
  }
}

export const lifecycle = fp(
  async (app: FastifyInstance) => {
    const service = new LifecycleService({
      store: app.store,
      storage: app.assets.storage,
      audit: app.audit,
      production: app.production.service,
      identity: app.identity.service,
      apiKeys: app.identity.apiKeys,
      storageQuota: app.limits.storage,
      log: app.log,
    });
    app.decorate('lifecycle', service);
    // before the job routes: their submissions check the storage quota
    await app.register(storageQuota, { service });
  },
  { name: 'lifecycle', dependencies: ['store', 'audit', 'identity', 'limits', 'assets', 'production'] },
);

export async function lifecycleApi(app: FastifyInstance) {
  await app.register(lifecycleRoutes, { prefix: '/api/anime', service: app.lifecycle });
}
