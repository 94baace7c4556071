import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { isStoreReady, type Store } from '../db/database.js';
import { HttpProblem } from './problem.js';

const Status = Type.Object({ status: Type.String() });

/** `/health` says only up; `/ready` also proves the store answers. */
export async function healthRoutes(app: FastifyInstance, options: { store: Store; dependenciesReady?: () => boolean }) {
  app.get('/health', { config: { auth: 'public' }, schema: { tags: ['health'], response: { 200: Status } } }, async () => ({
    status: 'up',
  }));

  app.get('/ready', { config: { auth: 'public' }, schema: { tags: ['health'], response: { 200: Status } } }, async () => {
    if (!(await isStoreReady(options.store))) throw new HttpProblem(503, 'not-ready', 'The store is not reachable.');
    if (options.dependenciesReady && !options.dependenciesReady()) throw new HttpProblem(503, 'not-ready', 'A service this one depends on is not reachable.');
    return { status: 'ready' };
  });
}
