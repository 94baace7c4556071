import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { addRouteHook } from '../http/route-hooks.js';
import type { Principal } from './principal.js';

/**
 * Admin routes (`config.role: 'admin'`) called with a session token need a second factor verified in
 * that session in the last 15 minutes. API keys are governed by scopes and signatures instead.
 * Runs after authentication and rate limits, on admin routes only.
 */
export const stepUp = fp(async (app: FastifyInstance, options: { assertSteppedUp: (principal: Principal) => Promise<void> }) => {
  app.addHook('onRoute', (route) => {
    if (route.config?.role !== 'admin') return;
    addRouteHook(route, 'onRequest', async (request) => {
      const principal = request.principal;
      if (!principal || principal.via !== 'token') return;
      await options.assertSteppedUp(principal);
    });
  });
});
