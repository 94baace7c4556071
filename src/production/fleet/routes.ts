import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { Auditor } from '../../audit/events.js';
import type { Store } from '../../db/database.js';
import { notFound } from '../../http/problem.js';
import { findUserById, userExists } from '../../identity/store.js';
import { decayedUsage, findShare, hasOwnWeight, saveShare, weightOf, type FairSharePolicy, type ShareSetting } from './fair-share.js';
import { principalOf } from '../../access/authentication.js';

const Setting = Type.Object(
  {
    weight: Type.Number({ minimum: 0.01, maximum: 100 }),
    max_running: Type.Union([Type.Integer({ minimum: 1, maximum: 100_000 }), Type.Null()]),
  },
  { additionalProperties: false },
);
const ShareAnswer = Type.Object({
  user_id: Type.String(),
  /** the weight fair share uses: the user's own if an admin set one, else the role's (CELFORGE_FLEET_ROLE_WEIGHTS) */
  weight: Type.Number(),
  weight_from: Type.Union([Type.Literal('user'), Type.Literal('role')]),
  /** null: the configured default (CELFORGE_FLEET_USER_MAX_RUNNING) or no cap */
  max_running: Type.Union([Type.Integer(), Type.Null()]),
  gpu_seconds: Type.Number(),
});
const UserParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

/** Admin: a user's share of the GPU fleet (fair-share weight, running cap) and recent GPU use. */
export async function fleetShareRoutes(app: FastifyInstance, options: { store: Store; audit: Auditor; policy: FairSharePolicy }) {
  const { store, audit, policy } = options;
  const view = async (userId: string) => {
    const user = await findUserById(store.db, userId);
    if (!user) throw notFound('No such user.');
    const share = await findShare(store.db, userId);
    return {
      user_id: userId,
      weight: weightOf(share, user.role, policy),
      weight_from: hasOwnWeight(share) ? ('user' as const) : ('role' as const),
      max_running: share?.max_running ?? null,
      gpu_seconds: decayedUsage(share, Date.now(), policy.halfLifeMs) / 1000,
    };
  };

  app.get<{ Params: { id: string } }>(
    '/admin/users/:id/share',
    { config: { role: 'admin', rateClass: 'admin', scope: 'admin' }, schema: { tags: ['admin'], params: UserParams, response: { 200: ShareAnswer } } },
    async (request) => view(request.params.id),
  );

  app.put<{ Params: { id: string }; Body: ShareSetting }>(
    '/admin/users/:id/share',
    {
      config: { role: 'admin', rateClass: 'admin', critical: true, scope: 'admin' },
      schema: { tags: ['admin'], params: UserParams, body: Setting, response: { 200: ShareAnswer } },
    },
    async (request) => {
      const userId = request.params.id;
      if (!(await userExists(store.db, userId))) throw notFound('No such user.');
      await saveShare(store.db, userId, request.body, principalOf(request).userId, new Date());
      audit.record({
        action: 'admin.user.share',
        outcome: 'success',
        actorId: principalOf(request).userId,
        target: userId,
        ip: request.ip,
        requestId: String(request.id),
        detail: { weight: request.body.weight, max_running: request.body.max_running },
      });
      return view(userId);
    },
  );
}
