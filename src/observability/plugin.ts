/**
 * Observability: Prometheus metrics (`/metrics`), liveness and readiness (`/api/anime/health`,
 * `/ready`). Owns no table: capabilities add their own gauges to `app.metrics.registry`.
 */
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { healthRoutes } from '../http/health.js';
import { Readiness, readinessMetric } from '../http/readiness.js';
import { Metrics } from './metrics.js';
import { metricsRoutes } from './routes.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Prometheus metrics of this app; `metrics.signinFailed(reason)` for the sign-in code */
    metrics: Metrics;
  }
}

export const observability = fp(
  async (app: FastifyInstance) => {
    const metrics = new Metrics();
    app.decorate('metrics', metrics);
    app.addHook('onResponse', (request, reply, done) => {
      metrics.observeRequest(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
      done();
    });
  },
  { name: 'observability', dependencies: ['store'] },
);

/** `/api/anime/health`, `/api/anime/ready` and (on API nodes) `/metrics`. */
export async function observabilityApi(app: FastifyInstance, options: { authOnly: boolean }) {
  const { config, store, identity, metrics } = app;
  // /ready is false while revocations cannot be trusted (feed or Redis subscriber down): take this node out.
  const readiness = new Readiness({
    store,
    dataDir: config.dataDir,
    // the auth service keeps no assets
    assetsDir: options.authOnly ? null : path.join(config.dataDir, 'assets'),
    dependenciesReady: () => identity.revocations.isReady(),
  });
  readinessMetric(metrics.registry, readiness);
  await app.register(healthRoutes, { prefix: '/api/anime', readiness });
  if (options.authOnly) return;
  await app.register(metricsRoutes, {
    metrics,
    bearer: identity.bearer,
    metricsToken: config.secrets.metricsToken,
    assertSteppedUp: (principal) => identity.service.assertSteppedUp(principal),
  });
}
