import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { Principal } from '../access/principal.js';
import { readCredentials, unauthorized, type Authenticator } from '../http/auth.js';
import { HttpProblem } from '../http/problem.js';
import type { Metrics } from './metrics.js';
import type { QuotaService } from './quotas.js';

const Limits = Type.Object({ active_jobs: Type.Integer(), jobs_per_day: Type.Integer() });
const Override = Type.Object(
  {
    active_jobs: Type.Union([Type.Integer({ minimum: 0, maximum: 100_000 }), Type.Null()]),
    jobs_per_day: Type.Union([Type.Integer({ minimum: 0, maximum: 10_000_000 }), Type.Null()]),
  },
  { additionalProperties: false },
);
const QuotaAnswer = Type.Object({
  user_id: Type.String(),
  effective: Limits,
  override: Override,
  defaults: Limits,
  usage: Type.Object({ active_jobs: Type.Integer(), jobs_today: Type.Integer() }),
});
const UserParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

/** Admin: read and override one user's job quotas. */
export async function quotaRoutes(app: FastifyInstance, options: { quotas: QuotaService }) {
  const { quotas } = options;
  app.get<{ Params: { id: string } }>(
    '/admin/users/:id/quota',
    {
      config: { role: 'admin', rateClass: 'admin', scope: 'admin' },
      schema: { tags: ['admin'], params: UserParams, response: { 200: QuotaAnswer } },
    },
    async (request) => quotas.view(request.params.id),
  );

  app.put<{ Params: { id: string }; Body: { active_jobs: number | null; jobs_per_day: number | null } }>(
    '/admin/users/:id/quota',
    {
      config: { role: 'admin', rateClass: 'admin', critical: true, scope: 'admin' },
      schema: { tags: ['admin'], params: UserParams, body: Override, response: { 200: QuotaAnswer } },
    },
    async (request) =>
      quotas.setOverride(request.params.id, request.body, { actorId: request.principal!.userId, ip: request.ip, requestId: request.id }),
  );
}

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
