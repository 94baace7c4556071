/**
 * Assets: the stored results of jobs — object storage (disk or S3), derivatives, signed URLs and
 * delivery. Owns the `assets` table (rows are inserted in production's completing transaction
 * through `assets/store.ts`).
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { assetRoutes } from './routes.js';
import { loadUrlSigningKey } from '../config/local-secrets.js';
import { UrlSigner } from './signed-urls.js';
import { AssetStorage, openObjectStore } from './storage.js';

export interface AssetServices {
  storage: AssetStorage;
  signer: UrlSigner;
}

declare module 'fastify' {
  interface FastifyInstance {
    assets: AssetServices;
  }
}

export const assets = fp(
  async (app: FastifyInstance) => {
    const { config } = app;
    const storage = new AssetStorage(await openObjectStore(config));
    const signer = new UrlSigner(loadUrlSigningKey({ dataDir: config.dataDir, urlSigningKey: config.secrets.urlSigningKey }));
    app.decorate('assets', { storage, signer });
    app.addHook('onClose', () => storage.close());
  },
  { name: 'assets', dependencies: ['store'] },
);

/** `/api/anime/assets/{id}`: a result's bytes for its owner or a signed URL. */
export async function assetsApi(app: FastifyInstance) {
  const { storage, signer } = app.assets;
  await app.register(assetRoutes, { prefix: '/api/anime', store: app.store, signer, storage, delivery: app.config.assets.delivery });
}
