import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { readCredentials, unauthorized, type Authenticator } from '../access/authentication.js';
import type { Principal } from '../access/principal.js';
import { HttpProblem } from '../http/problem.js';
import type { Metrics } from './metrics.js';

function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * `GET /metrics` for an admin's access token or `Authorization: Bearer <CELFORGE_METRICS_TOKEN>`.
 * Public to the global auth hook (which would take the metrics token for a malformed access
 * token); the check is made here.
 */
export async function metricsRoutes(
  app: FastifyInstance,
  options: { metrics: Metrics; bearer: Authenticator; metricsToken?: string; assertSteppedUp: (principal: Principal) => Promise<void> },
) {
  app.get('/metrics', { config: { auth: 'public' }, schema: { hide: true } }, async (request, reply) => {
    const credentials = readCredentials(request);
    if (!credentials) throw unauthorized('Send an admin access token or the metrics token.', 'invalid_request');
    if (credentials.scheme !== 'bearer') throw unauthorized('Send an admin access token or the metrics token.');
    const byToken = options.metricsToken !== undefined && sameSecret(credentials.value, options.metricsToken);
    if (!byToken) {
      const principal = await options.bearer.authenticate(credentials.value, request);
      if (principal.role !== 'admin') throw new HttpProblem(403, 'forbidden', 'Metrics are for administrators.');
      // the rule of every admin route: second factor enrolled and verified in this session lately
      await options.assertSteppedUp(principal);
    }
    const { contentType, body } = await options.metrics.render();
    return reply.type(contentType).send(body);
  });
}
