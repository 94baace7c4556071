import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Type } from 'typebox';
import { addRouteHook } from '../http/route-hooks.js';
import { contextOf } from '../http/request-context.js';
import type { LifecycleService } from './service.js';
import { principalOf } from '../access/authentication.js';

const Params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
const Storage = Type.Object({
  used_bytes: Type.Integer(),
  limit_bytes: Type.Integer(),
  override_bytes: Type.Union([Type.Integer(), Type.Null()]),
  default_bytes: Type.Integer(),
});
const StorageBody = Type.Object(
  { storage_bytes: Type.Union([Type.Integer({ minimum: 0, maximum: 2 ** 50 }), Type.Null()], { description: 'null: the configured default' }) },
  { additionalProperties: false },
);
const DeleteAccountBody = Type.Object({ password: Type.String({ minLength: 1, maxLength: 256 }) }, { additionalProperties: false });

/**
 * The storage quota on the routes that take jobs (`config.jobQuota`): a user whose results fill
 * their quota submits nothing new until they delete some. Register before those routes.
 */
export const storageQuota = fp(async (app: FastifyInstance, options: { service: LifecycleService }) => {
  app.addHook('onRoute', (route) => {
    if (!route.config?.jobQuota) return;
    addRouteHook(route, 'preHandler', async (request) => {
      if (request.principal) await options.service.assertRoomForResults(request.principal.userId);
    });
  });
});

/**
 * `GET /storage` (own usage and quota), admin `GET|PUT /admin/users/{id}/storage`,
 * `DELETE /jobs/{id}`, `DELETE /account` (own, password again), admin `DELETE /admin/users/{id}`.
 */
export const lifecycleRoutes: FastifyPluginAsyncTypebox<{ service: LifecycleService }> = async (app, { service }) => {
  app.get('/storage', { config: { rateClass: 'read', scope: 'jobs:read' }, schema: { tags: ['storage'], response: { 200: Storage } } }, async (request) =>
    service.storageOf(principalOf(request).userId),
  );

  app.get(
    '/admin/users/:id/storage',
    { config: { role: 'admin', rateClass: 'admin', scope: 'admin' }, schema: { tags: ['admin'], params: Params, response: { 200: Storage } } },
    async (request) => service.storageFor(request.params.id),
  );

  app.put(
    '/admin/users/:id/storage',
    { config: { role: 'admin', rateClass: 'admin', critical: true, scope: 'admin' }, schema: { tags: ['admin'], params: Params, body: StorageBody, response: { 200: Storage } } },
    async (request) => service.setStorageOverride(principalOf(request), request.params.id, request.body.storage_bytes, contextOf(request)),
  );

  app.delete(
    '/jobs/:id',
    { config: { rateClass: 'write', critical: true, scope: 'jobs:write' }, schema: { tags: ['production'], params: Params, response: { 204: Type.Null() } } },
    async (request, reply) => {
      await service.deleteJob(principalOf(request), request.params.id, contextOf(request));
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/account',
    { config: { rateClass: 'write', critical: true }, schema: { tags: ['storage'], body: DeleteAccountBody, response: { 204: Type.Null() } } },
    async (request, reply) => {
      await service.deleteOwnAccount(principalOf(request), request.body.password, contextOf(request));
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/admin/users/:id',
    { config: { role: 'admin', rateClass: 'admin', critical: true, scope: 'admin' }, schema: { tags: ['admin'], params: Params, response: { 204: Type.Null() } } },
    async (request, reply) => {
      await service.adminDeleteAccount(principalOf(request), request.params.id, contextOf(request));
      return reply.code(204).send(null);
    },
  );
};
