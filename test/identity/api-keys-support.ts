import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { Services } from '../../src/app.js';
import type { SignedIn } from '../support/users.js';

export interface CreatedKey {
  id: string;
  key: string;
  signing_secret: string;
  prefix: string;
  name: string;
  scopes: string[];
  created_at: string;
  expires_at: string;
}

/** Test-only routes: a scoped read, an admin-scoped read and a critical write. */
export async function testRoutes(app: FastifyInstance, _services: Services) {
  app.get('/test/whoami', { config: { scope: 'jobs:read' } }, async (request) => request.principal);
  app.get('/test/jobs', { config: { scope: 'jobs:read' } }, async () => ({ ok: true }));
  app.get('/test/admin', { config: { scope: 'admin', role: 'admin' } }, async () => ({ ok: true }));
  app.get('/test/admin-jobs', { config: { scope: 'jobs:read', role: 'admin' } }, async () => ({ ok: true }));
  app.post('/test/admin-action', { config: { role: 'admin', scope: 'admin' } }, async () => ({ ok: true }));
  app.route({
    method: ['POST', 'PUT', 'DELETE'],
    url: '/test/critical/:name',
    config: { critical: true, scope: 'jobs:read' },
    schema: { params: Type.Object({ name: Type.String({ maxLength: 20 }) }) },
    handler: async (request) => ({ ok: true, method: request.method, name: (request.params as { name: string }).name, body: request.body ?? null }),
  });
}

export async function createKey(
  app: FastifyInstance,
  user: SignedIn,
  body: Record<string, unknown> = { name: 'ci', scopes: ['jobs:read'] },
): Promise<CreatedKey> {
  const res = await app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: user.authorization, payload: body });
  if (res.statusCode !== 201) throw new Error(`create key: ${res.statusCode} ${res.body}`);
  return res.json() as CreatedKey;
}

export const apiKeyHeader = (key: string) => ({ authorization: `ApiKey ${key}` });
