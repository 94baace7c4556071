import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

/** Where `npm run build` puts the studio (the same two levels up from src/http and dist/http). */
export const STUDIO_DIST = resolve(dirname(fileURLToPath(import.meta.url)), '../../web/dist');

/**
 * The studio's Content-Security-Policy: its own scripts, styles and API only; pictures and video
 * also from blob: and data: (downloads, previews); never framed. No inline script, no eval, no
 * third-party origin.
 */
export const STUDIO_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "media-src 'self' blob: data:",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const IMMUTABLE = 'public, max-age=31536000, immutable';

export interface Studio {
  /** mounts the built files (nothing when the studio is not built) */
  register(app: FastifyInstance): Promise<void>;
  /** answers a GET/HEAD for an unknown path outside `/api/` with index.html; false when it is not the studio's */
  fallback(request: FastifyRequest, reply: FastifyReply): boolean;
}

function isStudioPath(request: FastifyRequest): boolean {
  if (request.method !== 'GET' && request.method !== 'HEAD') return false;
  const path = request.url.split('?')[0] ?? '/';
  return !path.startsWith('/api/') && path !== '/api' && path !== '/metrics';
}

/**
 * The studio's static files: hashed assets (`/assets/*`) cached for a year, `index.html` never
 * cached, and every other page path of the single-page app answered with `index.html`. `/api/*`
 * is untouched: an unknown API path keeps its problem+json 404.
 */
export function studio(root: string = STUDIO_DIST): Studio {
  const indexFile = join(root, 'index.html');
  const index = existsSync(indexFile) ? readFileSync(indexFile) : null;

  const sendIndex = (reply: FastifyReply) =>
    reply.code(200).header('content-security-policy', STUDIO_CSP).header('cache-control', 'no-store').type('text/html; charset=utf-8').send(index);

  return {
    async register(app) {
      if (!index) {
        app.log.warn('the studio is not built (run npm run build): / answers 404');
        return;
      }
      await app.register(async (scope) => {
        // Only `reply.sendFile`: the routes below are declared here, so their config (public, no
        // API-key scope) is what the access table and the authentication hook both read.
        await scope.register(fastifyStatic, {
          root,
          serve: false,
          index: false,
          cacheControl: false,
          serveDotFiles: false,
          // `npm run build` writes .br and .gz next to each text file; the smallest one accepted is sent.
          preCompressed: true,
        });
        const page = { config: { auth: 'public' as const }, schema: { hide: true } };
        scope.get('/', page, async (_request, reply) => sendIndex(reply));
        scope.get('/index.html', page, async (_request, reply) => sendIndex(reply));
        // Under /assets/ the names carry a content hash: a changed file is a new name.
        scope.get<{ Params: { '*': string } }>('/assets/*', page, (request, reply) =>
          reply.header('content-security-policy', STUDIO_CSP).header('cache-control', IMMUTABLE).sendFile(`assets/${request.params['*']}`),
        );
        for (const name of readdirSync(root)) {
          if (name !== 'index.html' && statSync(join(root, name)).isFile() && !/\.(br|gz)$/.test(name)) {
            scope.get(`/${name}`, page, (_request, reply) =>
              reply.header('content-security-policy', STUDIO_CSP).header('cache-control', 'public, max-age=3600').sendFile(name),
            );
          }
        }
      });
    },
    fallback(request, reply) {
      if (!index || !isStudioPath(request)) return false;
      sendIndex(reply);
      return true;
    },
  };
}

/** Serves the studio's files; register after every API route (its fallback goes to the `http` plugin). */
export const studioPlugin = fp(async (app: FastifyInstance, options: { site: Studio }) => options.site.register(app), {
  name: 'studio',
  dependencies: ['http'],
});
