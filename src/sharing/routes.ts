import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { deliverAsset, type DeliveryOptions } from '../assets/routes.js';
import { notFound } from '../http/problem.js';
import { contextOf } from '../http/request-context.js';
import { MAX_SHARE_SECONDS, MIN_SHARE_SECONDS, type ShareService } from './service.js';
import { principalOf } from '../access/authentication.js';

const JobParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
const TokenParams = Type.Object({ token: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
const AssetParams = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 64 }), assetId: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);

const CreateBody = Type.Object(
  { expires_in: Type.Integer({ minimum: MIN_SHARE_SECONDS, maximum: MAX_SHARE_SECONDS, description: 'seconds: 3600 (1 h) to 2592000 (30 d)' }) },
  { additionalProperties: false },
);
const ShareLink = Type.Object({
  id: Type.String(),
  job_id: Type.String(),
  created_at: Type.String(),
  expires_at: Type.String(),
  revoked_at: Nullable(Type.String()),
  active: Type.Boolean(),
  open_count: Type.Integer(),
  last_opened_at: Nullable(Type.String()),
});
const CreatedShareLink = Type.Intersect([ShareLink, Type.Object({ token: Type.String(), url: Type.String() })]);
const SharedAsset = Type.Object({ id: Type.String(), content_type: Type.String(), byte_size: Type.Integer(), url: Type.String(), thumbnail_url: Type.String() });
const SharedWork = Type.Object({
  type: Type.Union([Type.Literal('image'), Type.Literal('video')]),
  prompt: Type.String(),
  created_at: Type.String(),
  expires_at: Type.String(),
  assets: Type.Array(SharedAsset),
});

/**
 * Owners: `POST /jobs/{id}/shares {expires_in}` (the token is shown once), `GET /jobs/{id}/shares`,
 * `DELETE /shares/{id}`. Anyone with the link: `GET /shared/{token}` and the work's bytes under it.
 */
export const shareRoutes: FastifyPluginAsyncTypebox<{ service: ShareService; publicUrl: string } & DeliveryOptions> = async (app, options) => {
  const { service } = options;

  app.post(
    '/jobs/:id/shares',
    {
      config: { rateClass: 'write', critical: true, scope: 'gallery:publish' },
      schema: { tags: ['sharing'], params: JobParams, body: CreateBody, response: { 201: CreatedShareLink } },
    },
    async (request, reply) => {
      const link = await service.create(principalOf(request), request.params.id, request.body.expires_in, contextOf(request));
      return reply.code(201).send({ ...link, url: `${options.publicUrl}/api/anime/shared/${link.token}` });
    },
  );

  app.get(
    '/jobs/:id/shares',
    { config: { rateClass: 'read', scope: 'jobs:read' }, schema: { tags: ['sharing'], params: JobParams, response: { 200: Type.Object({ items: Type.Array(ShareLink) }) } } },
    async (request) => ({ items: await service.list(principalOf(request), request.params.id) }),
  );

  app.delete(
    '/shares/:id',
    { config: { rateClass: 'write', critical: true, scope: 'gallery:publish' }, schema: { tags: ['sharing'], params: JobParams, response: { 204: Type.Null() } } },
    async (request, reply) => {
      await service.revoke(principalOf(request), request.params.id, contextOf(request));
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/shared/:token',
    { config: { auth: 'public', rateClass: 'read' }, schema: { tags: ['sharing'], params: TokenParams, response: { 200: SharedWork } } },
    async (request) => {
      const { token } = request.params;
      const { link, job, assets } = await service.open(token, contextOf(request));
      return {
        type: job.type,
        prompt: job.prompt,
        created_at: job.created_at,
        expires_at: link.expires_at,
        assets: assets.map((asset) => ({
          id: asset.id,
          content_type: asset.content_type,
          byte_size: asset.byte_size,
          url: `/api/anime/shared/${token}/assets/${asset.id}`,
          thumbnail_url: `/api/anime/shared/${token}/assets/${asset.id}/thumbnail`,
        })),
      };
    },
  );

  for (const which of ['original', 'thumbnail'] as const) {
    app.get(
      which === 'original' ? '/shared/:token/assets/:assetId' : '/shared/:token/assets/:assetId/thumbnail',
      { config: { auth: 'public', rateClass: 'read' }, schema: { tags: ['sharing'], params: AssetParams } },
      async (request, reply) => {
        const { assets } = await service.resolve(request.params.token);
        const asset = assets.find((candidate) => candidate.id === request.params.assetId);
        if (!asset) throw notFound('No such asset.');
        return deliverAsset(request, reply, asset, { ...options, which });
      },
    );
  }
};
