import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { errorHandling } from './errors.js';
import { openApi } from './openapi.js';
import { rawJsonBody } from './raw-body.js';
import { securityHeaders } from './security.js';

export interface HttpOptions {
  /** answers an unknown GET outside `/api/` (the studio's pages); false when it does not */
  fallback?: (request: FastifyRequest, reply: FastifyReply) => boolean;
}

/** What every route shares: problem+json errors, 404/405, security headers and CORS, OpenAPI, raw JSON bodies. */
export const http = fp(
  async (app: FastifyInstance, options: HttpOptions) => {
    await app.register(errorHandling, { outage: app.outage, fallback: options.fallback });
    await app.register(securityHeaders, { corsOrigins: app.config.corsOrigins });
    await app.register(openApi);
    await app.register(rawJsonBody);
  },
  { name: 'http', dependencies: ['store'] },
);
