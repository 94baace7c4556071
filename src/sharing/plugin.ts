/**
 * Sharing: expiring links that show one job's results to anyone holding them. Owns the
 * `share_links` table.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { shareRoutes } from './routes.js';
import { ShareService } from './service.js';

declare module 'fastify' {
  interface FastifyInstance {
    sharing: ShareService;
  }
}

export const sharing = fp(
  async (app: FastifyInstance) => {
    app.decorate('sharing', new ShareService({ store: app.store, audit: app.audit, production: app.production.service }));
  },
  { name: 'sharing', dependencies: ['store', 'audit', 'production'] },
);

export async function sharingApi(app: FastifyInstance) {
  const { config } = app;
  await app.register(shareRoutes, {
    prefix: '/api/anime',
    service: app.sharing,
    publicUrl: config.publicUrl,
    storage: app.assets.storage,
    delivery: config.assets.delivery,
  });
}
