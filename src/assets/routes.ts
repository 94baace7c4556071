import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Store } from '../db/database.js';
import { HttpProblem } from '../http/problem.js';
import { openableAsset } from './service.js';
import type { UrlSigner } from './signed-urls.js';
import { extensionFor, type AssetStorage } from './storage.js';

const Params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
const Query = Type.Object(
  {
    // one spelling each, as `UrlSigner.url` writes them: decimal without sign or leading zeros, unpadded base64url
    expires: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,10}$' })),
    signature: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' })),
    download: Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('true')])),
  },
  { additionalProperties: false },
);

/** `bytes=a-b`, `bytes=a-` or `bytes=-n`; one range only. null: serve the whole file. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  if (!header) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return null;
  let start: number;
  let end: number;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}

/** `GET /api/anime/assets/{id}`: the bytes of a result, with Range support for video. */
export const assetRoutes: FastifyPluginAsyncTypebox<{ store: Store; signer: UrlSigner; storage: AssetStorage }> = async (app, options) => {
  app.get(
    '/assets/:id',
    { config: { auth: 'optional', rateClass: 'read', scope: 'jobs:read' }, schema: { tags: ['assets'], params: Params, querystring: Query } },
    async (request, reply) => {
      const asset = await openableAsset(options.store, options.signer, request.params.id, {
        principal: request.principal,
        expires: request.query.expires === undefined ? undefined : Number(request.query.expires),
        signature: request.query.signature,
      });
      const size = options.storage.size(asset.storage_key);
      if (size === null) throw new HttpProblem(404, 'not-found', 'No such asset.');
      const disposition = request.query.download ? 'attachment' : 'inline';
      reply
        .header('content-type', asset.content_type)
        .header('x-content-type-options', 'nosniff')
        .header('content-disposition', `${disposition}; filename="${asset.id}.${extensionFor(asset.content_type)}"`)
        .header('accept-ranges', 'bytes')
        .header('cache-control', 'private, max-age=300')
        // a result may be shown by <img>/<video> on a page of another allowed origin
        .header('cross-origin-resource-policy', 'same-site')
        .header('content-security-policy', "default-src 'none'; sandbox");
      const range = parseRange(request.headers.range, size);
      if (range === 'unsatisfiable') {
        throw new HttpProblem(416, 'range-not-satisfiable', 'The requested range is outside the file.', {
          headers: { 'content-range': `bytes */${size}` },
        });
      }
      if (range) {
        reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`).header('content-length', range.end - range.start + 1);
        return reply.send(options.storage.open(asset.storage_key, range));
      }
      reply.header('content-length', size);
      return reply.send(options.storage.open(asset.storage_key));
    },
  );
};
