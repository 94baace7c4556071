import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { HttpProblem } from './problem.js';

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

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
    // Strict UTF-8: a lenient decoder would swap bad bytes for U+FFFD and the text stored would not be the text sent.
    let text: string;
    try {
      text = UTF8.decode(bytes);
    } catch {
      done(new HttpProblem(400, 'malformed-json', 'The body is not valid UTF-8.'), undefined);
      return;
    }
    parse(request, text, done);
  });
});
