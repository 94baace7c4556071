import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { QuotaService } from './quotas.js';
import { principalOf } from '../access/authentication.js';

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
      quotas.setOverride(request.params.id, request.body, { actorId: principalOf(request).userId, ip: request.ip, requestId: request.id }),
  );
}
