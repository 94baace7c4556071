import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

declare module 'fastify' {
  interface FastifyRequest {
    /** the JSON body's bytes exactly as received (for Content-Digest checks) */
    rawBody?: Buffer;
  }
}

/**
 * JSON bodies are kept as received next to the parsed value. Parsing is Fastify's own default
 * parser, so __proto__ and constructor.prototype keys are still refused.
 */
export const rawJsonBody = fp(async (app: FastifyInstance) => {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const bytes = body as Buffer;
    request.rawBody = bytes;
    // The default parser takes text or bytes (secure-json-parse decodes a Buffer as UTF-8).
    parse(request, bytes as unknown as string, done);
  });
});
