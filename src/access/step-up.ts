import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Principal } from './principal.js';

/**
 * Admin routes (`config.role: 'admin'`) called with a session token need a second factor verified in
 * that session in the last 15 minutes (§6). API keys are governed by scopes and signatures instead.
 * Runs after authentication; reads the store only on admin routes.
 */
export const stepUp = fp(async (app: FastifyInstance, options: { assertSteppedUp: (principal: Principal) => Promise<void> }) => {
  app.addHook('onRequest', async (request) => {
    if (request.is404 || request.routeOptions.config.role !== 'admin') return;
    const principal = request.principal;
    if (!principal || principal.via !== 'token') return;
    await options.assertSteppedUp(principal);
  });
});
