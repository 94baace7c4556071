import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { contextOf } from '../http/request-context.js';
import { JobTypeSchema } from '../db/schema.js';
import { AssetView, JobView } from '../production/views.js';
import type { GalleryService } from './service.js';
import { principalOf } from '../access/authentication.js';

const Params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
const Visibility = Type.Union([Type.Literal('public'), Type.Literal('members')]);
const PublishBody = Type.Object({ visibility: Visibility }, { additionalProperties: false });
const Query = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    type: Type.Optional(JobTypeSchema),
  },
  { additionalProperties: false },
);
const Item = Type.Object({
  job_id: Type.String(),
  type: JobTypeSchema,
  prompt: Type.String(),
  width: Type.Integer(),
  height: Type.Integer(),
  visibility: Visibility,
  published_at: Type.String(),
  assets: Type.Array(AssetView),
});
const Page = Type.Object({ items: Type.Array(Item), next_cursor: Type.Union([Type.String(), Type.Null()]) });

/** Publish/unpublish a job, and the gallery of published results. */
export const galleryRoutes: FastifyPluginAsyncTypebox<{ service: GalleryService }> = async (app, { service }) => {
  app.post(
    '/jobs/:id/publish',
    {
      config: { rateClass: 'write', critical: true, scope: 'gallery:publish' },
      schema: { tags: ['gallery'], params: Params, body: PublishBody, response: { 200: JobView } },
    },
    async (request) => service.publish(principalOf(request), request.params.id, request.body.visibility, contextOf(request)),
  );

  app.delete(
    '/jobs/:id/publish',
    { config: { rateClass: 'write', critical: true, scope: 'gallery:publish' }, schema: { tags: ['gallery'], params: Params, response: { 200: JobView } } },
    async (request) => service.publish(principalOf(request), request.params.id, null, contextOf(request)),
  );

  app.get(
    '/gallery',
    { config: { auth: 'optional', rateClass: 'read', scope: 'jobs:read' }, schema: { tags: ['gallery'], querystring: Query, response: { 200: Page } } },
    async (request) => service.list(request.principal, request.query),
  );
};
