import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { HttpProblem } from './problem.js';
import type { ReadinessCheck, Readiness } from './readiness.js';

const Status = Type.Object({ status: Type.String() });

/** What `/ready` says when a check fails (never a path or a host). */
const NOT_READY: Record<ReadinessCheck, string> = {
  store: 'The store is not reachable.',
  store_writable: 'The store does not take writes (full or read-only).',
  assets_writable: 'The asset storage does not take files (full or read-only).',
  dependencies: 'A service this one depends on is not reachable.',
};

/** `/health` says only up; `/ready` also proves the store answers and the store and the asset storage take writes. */
export async function healthRoutes(app: FastifyInstance, options: { readiness: Readiness }) {
  app.get('/health', { config: { auth: 'public' }, schema: { tags: ['health'], response: { 200: Status } } }, async () => ({
    status: 'up',
  }));

  app.get('/ready', { config: { auth: 'public' }, schema: { tags: ['health'], response: { 200: Status } } }, async () => {
    const { ready, checks } = await options.readiness.check();
    if (!ready) {
      const failed = (Object.keys(checks) as ReadinessCheck[]).filter((check) => !checks[check]);
      throw new HttpProblem(503, 'not-ready', NOT_READY[failed[0]!], { extensions: { failed }, headers: { 'retry-after': '5' } });
    }
    return { status: 'ready' };
  });
}
