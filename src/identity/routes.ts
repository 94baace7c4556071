import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { Store } from '../db/database.js';
import { notFound } from '../http/problem.js';
import { publicJwks, type SigningKeySet } from './keys.js';
import { findUserById } from './store.js';

const Me = Type.Object({
  id: Type.String(),
  email: Type.String(),
  role: Type.Union([Type.Literal('admin'), Type.Literal('user')]),
  totp_enabled: Type.Boolean(),
  created_at: Type.String(),
});

export async function identityRoutes(app: FastifyInstance, options: { store: Store; keys: () => SigningKeySet }) {
  app.get('/me', { schema: { tags: ['identity'], response: { 200: Me } } }, async (request) => {
    const user = await findUserById(options.store.db, request.principal!.userId);
    if (!user) throw notFound();
    return { id: user.id, email: user.email, role: user.role, totp_enabled: user.totp_enabled === 1, created_at: user.created_at };
  });

  app.get('/jwks.json', { config: { auth: 'public' }, schema: { tags: ['identity'] } }, async (_request, reply) => {
    reply.header('cache-control', 'public, max-age=300');
    return publicJwks(options.keys());
  });
}
