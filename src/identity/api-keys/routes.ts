import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import { API_KEY_SCOPES, type ApiKeyService } from './service.js';
import { principalOf } from '../../access/authentication.js';

const Scope = Type.Union(API_KEY_SCOPES.map((scope) => Type.Literal(scope)));
const IsoTime = Type.String({ minLength: 20, maxLength: 35, pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$' });

const NewKey = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    scopes: Type.Array(Scope, { minItems: 1, maxItems: API_KEY_SCOPES.length, uniqueItems: true }),
    expires_at: Type.Optional(IsoTime),
  },
  { additionalProperties: false },
);

const KeyFields = {
  id: Type.String(),
  prefix: Type.String(),
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  created_at: Type.String(),
  expires_at: Type.Union([Type.String(), Type.Null()]),
};

const CreatedKey = Type.Object({
  ...KeyFields,
  key: Type.String({ description: 'The API key. Shown only in this answer; Celforge keeps only its SHA-256.' }),
  signing_secret: Type.String({
    description:
      'The HMAC secret for RFC 9421 signatures of critical requests made with this key: 32 random bytes, base64url. ' +
      'Shown only in this answer and never sent with a request; Celforge keeps it only encrypted.',
    minLength: 43,
    maxLength: 43,
  }),
});

const ListedKey = Type.Object({
  ...KeyFields,
  last_used_at: Type.Union([Type.String(), Type.Null()]),
  expired: Type.Boolean(),
});

const KeyId = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });

/** `/api-keys` under `/api/auth`. */
export async function apiKeyRoutes(app: FastifyInstance, options: { keys: ApiKeyService }) {
  const { keys } = options;

  app.post<{ Body: Static<typeof NewKey> }>(
    '/api-keys',
    {
      config: { rateClass: 'write' },
      schema: { tags: ['identity'], body: NewKey, response: { 201: CreatedKey } },
    },
    async (request, reply) => {
      const created = await keys.create(principalOf(request), request.body, { ip: request.ip, requestId: request.id });
      reply.code(201).header('cache-control', 'no-store');
      return created;
    },
  );

  app.get(
    '/api-keys',
    { config: { rateClass: 'read' }, schema: { tags: ['identity'], response: { 200: Type.Object({ items: Type.Array(ListedKey) }) } } },
    async (request) => ({ items: await keys.list(principalOf(request).userId) }),
  );

  app.delete<{ Params: Static<typeof KeyId> }>(
    '/api-keys/:id',
    { config: { rateClass: 'write', critical: true }, schema: { tags: ['identity'], params: KeyId } },
    async (request, reply) => {
      await keys.revoke(principalOf(request), request.params.id, { ip: request.ip, requestId: request.id });
      return reply.code(204).send();
    },
  );
}
