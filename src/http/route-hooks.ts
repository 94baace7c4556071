import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify';

type RouteHook = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/**
 * Adds a hook to one route, from an `onRoute` hook: a check that only some routes need (step-up,
 * signatures, generation charges, quotas) runs on those routes only. Route hooks run after the
 * app's hooks of the same kind, in the order they were added.
 */
export function addRouteHook(route: RouteOptions, name: 'onRequest' | 'preValidation' | 'preHandler', hook: RouteHook): void {
  const existing = route[name] as RouteHook | RouteHook[] | undefined;
  const hooks = existing === undefined ? [] : Array.isArray(existing) ? existing : [existing];
  (route as unknown as Record<string, RouteHook[]>)[name] = [...hooks, hook];
}
