/**
 * Audit: the hash-chained trail of security-relevant actions and of every request. Owns the
 * `audit_log` and `audit_head` tables; others record through `app.audit` (an `Auditor`).
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { loadUrlSigningKey } from '../config/local-secrets.js';
import { checkpointKey, startCheckpoints } from './anchor.js';
import type { Auditor } from './events.js';
import { auditRequests, auditRoutes } from './routes.js';
import { startRetention, StoreAuditor } from './service.js';

declare module 'fastify' {
  interface FastifyInstance {
    audit: Auditor;
  }
}

/** The auditor, its retention and checkpoints, and the `http.request` row of every request. */
export const audit = fp(
  async (app: FastifyInstance) => {
    const { config, store, outage } = app;
    // while the store is out, the outage is logged once instead of each retry of the audit writer
    const auditor = new StoreAuditor(store, {
      onError: (message, error) => (error !== undefined && outage.report(error) ? undefined : app.log.error({ err: error }, message)),
    });
    app.decorate('audit', auditor);
    const stopRetention = startRetention(store, config.auditRetentionDays, (error) => app.log.error({ err: error }, 'audit: retention failed'));
    const key = checkpointKey(loadUrlSigningKey({ dataDir: config.dataDir, urlSigningKey: config.secrets.urlSigningKey }));
    const stopCheckpoints = startCheckpoints({ store, key, file: config.auditCheckpointFile, log: app.log });
    app.addHook('onClose', async () => {
      stopRetention();
      await auditor.close();
      await stopCheckpoints();
    });
    await app.register(auditRequests, { audit: auditor });
  },
  { name: 'audit', dependencies: ['store'] },
);

/** Admin: the trail, `/api/anime/admin/audit…`. */
export async function auditApi(app: FastifyInstance) {
  await app.register(auditRoutes, { prefix: '/api/anime', store: app.store, audit: app.audit });
}
