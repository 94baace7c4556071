/**
 * Gallery: publishing a succeeded job (public or unlisted) and browsing what is published. Owns no
 * table: a job's visibility is a column of production's `jobs`, set through `production/store.ts`.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { galleryRoutes } from './routes.js';
import { GalleryService } from './service.js';

declare module 'fastify' {
  interface FastifyInstance {
    gallery: GalleryService;
  }
}

export const gallery = fp(
  async (app: FastifyInstance) => {
    app.decorate('gallery', new GalleryService({ store: app.store, signer: app.assets.signer, audit: app.audit, production: app.production.service }));
  },
  { name: 'gallery', dependencies: ['store', 'audit', 'assets', 'production'] },
);

export async function galleryApi(app: FastifyInstance) {
  await app.register(galleryRoutes, { prefix: '/api/anime', service: app.gallery });
}
