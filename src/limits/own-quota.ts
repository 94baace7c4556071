import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { LimitSettings } from '../config/config.js';
import type { QuotaService } from './quotas.js';
import { principalOf } from '../access/authentication.js';

const Limits = Type.Object({ active_jobs: Type.Integer(), jobs_per_day: Type.Integer() });
const OwnQuota = Type.Object({
  limits: Limits,
  usage: Type.Object({ active_jobs: Type.Integer(), jobs_today: Type.Integer() }),
  generation: Type.Object(
    {
      quota: Type.Integer({ description: 'units of the generation budget per window' }),
      window_seconds: Type.Integer(),
      costs: Type.Object({ image: Type.Integer(), video: Type.Integer() }),
    },
    { description: 'what remains of the window is in the RateLimit header of each generate answer' },
  ),
});

/** `GET /quota`: the caller's own job quotas, what they used of them, and the generation budget's terms. */
export async function ownQuotaRoute(app: FastifyInstance, options: { quotas: QuotaService; limits: LimitSettings }) {
  const { quotas, limits } = options;
  const generation = {
    quota: limits.rates.generation.quota,
    window_seconds: limits.rates.generation.windowSeconds,
    costs: { image: limits.costs.image, video: limits.costs.video },
  };
  app.get(
    '/quota',
    { config: { rateClass: 'read', scope: 'jobs:read' }, schema: { tags: ['production'], response: { 200: OwnQuota } } },
    async (request) => {
      const view = await quotas.view(principalOf(request).userId);
      return { limits: view.effective, usage: view.usage, generation };
    },
  );
}
