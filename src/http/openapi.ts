import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyContextConfig, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/**
 * Each operation shows who may call it, from the same `config` the authentication hook enforces:
 * `security` (none for public routes; API keys only where a scope is declared) and
 * `x-celforge-api-key-scope` (the scope, or null: not for API keys).
 */
function withAccess<T extends object | undefined>(schema: T, access: FastifyContextConfig): T {
  if (schema && 'hide' in schema && schema.hide) return schema;
  const auth = access.auth ?? 'required';
  const security: Record<string, string[]>[] = auth === 'public' ? [] : access.scope ? [{ bearer: [] }, { apiKey: [] }] : [{ bearer: [] }];
  if (auth === 'optional') security.push({});
  return { ...schema, security, 'x-celforge-api-key-scope': auth === 'public' ? null : (access.scope ?? null) } as T;
}

/** OpenAPI 3.1 from the route schemas, at /api/anime/openapi.json, and Swagger UI at /api/anime/docs. */
export const openApi = fp(async (app: FastifyInstance) => {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Celforge', version: '0.1.0', description: 'Secure anime production service.' },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        },
      },
      security: [{ bearer: [] }, { apiKey: [] }],
    },
    transform: ({ schema, url, route }) => ({ schema: withAccess(schema, route.config ?? {}), url }),
  });

  app.get('/api/anime/openapi.json', { config: { auth: 'public' }, schema: { hide: true } }, async () => app.swagger());

  await app.register(async (docs) => {
    docs.addHook('onRoute', (route) => {
      route.config = { ...route.config, auth: 'public' };
    });
    await docs.register(swaggerUi, { routePrefix: '/api/anime/docs', staticCSP: true });
  });
});
