import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Store } from '../db/database.js';
import { HttpProblem } from '../http/problem.js';
import type { AssetRow } from './store.js';
import { openableAsset } from './service.js';
import type { UrlSigner } from './signed-urls.js';
import { ObjectMissingError, type ByteRange } from './backends/object-store.js';
import { extensionFor, originalKey, type AssetStorage } from './storage.js';

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

/** A presigned GET lives this long: enough to start a download, too short to pass around. */
const PRESIGNED_SECONDS = 60;

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

export interface DeliveryOptions {
  storage: AssetStorage;
  /** `redirect`: a presigned GET of the object store instead of the bytes (S3 only) */
  delivery: 'stream' | 'redirect';
}

/**
 * Sends a result (or its thumbnail) once the caller's right to it is established: the bytes with
 * Range support, or a redirect to a presigned GET that lives a minute.
 */
export async function deliverAsset(
  request: FastifyRequest,
  reply: FastifyReply,
  asset: AssetRow,
  options: DeliveryOptions & { which: 'original' | 'thumbnail'; download?: boolean },
) {
  const { storage, which } = options;
  const contentType = which === 'original' ? asset.content_type : 'image/webp';
  const extension = which === 'original' ? extensionFor(asset.content_type) : 'webp';
  const disposition = `${options.download ? 'attachment' : 'inline'}; filename="${asset.id}${which === 'thumbnail' ? '-thumbnail' : ''}.${extension}"`;
  if (options.delivery === 'redirect' && which === 'original' && storage.objects.presign) {
    const url = await storage.objects.presign(originalKey(asset.storage_key), { contentType, disposition, expiresInSeconds: PRESIGNED_SECONDS });
    return reply.code(302).header('location', url).header('cache-control', 'no-store').send();
  }
  // A thumbnail is small: one GET of all of it, no HEAD for its size first; a Range is ignored
  // (RFC 9110 §14.2 lets a server answer 200 with the whole representation).
  if (which === 'thumbnail') {
    const body = await openObject(storage, asset.storage_key, undefined, which);
    return withAssetHeaders(reply, contentType, disposition).header('accept-ranges', 'none').send(body);
  }
  // An original's size is in its row: one round trip to the object store per request, for exactly the range asked.
  const size = asset.byte_size;
  const range = parseRange(request.headers.range, size);
  if (range === 'unsatisfiable') {
    throw new HttpProblem(416, 'range-not-satisfiable', 'The requested range is outside the file.', {
      headers: { 'content-range': `bytes */${size}` },
    });
  }
  const body = await openObject(storage, asset.storage_key, range ?? undefined, which);
  withAssetHeaders(reply, contentType, disposition).header('accept-ranges', 'bytes');
  if (range) {
    reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`);
  }
  return reply.header('content-length', range ? range.end - range.start + 1 : size).send(body);
}

function withAssetHeaders(reply: FastifyReply, contentType: string, disposition: string): FastifyReply {
  return (
    reply
      .header('content-type', contentType)
      .header('x-content-type-options', 'nosniff')
      .header('content-disposition', disposition)
      .header('cache-control', 'private, max-age=300')
      // a result may be shown by <img>/<video> on a page of another allowed origin
      .header('cross-origin-resource-policy', 'same-site')
      .header('content-security-policy', "default-src 'none'; sandbox")
  );
}

async function openObject(storage: AssetStorage, storageKey: string, range: ByteRange | undefined, which: 'original' | 'thumbnail') {
  try {
    return await storage.open(storageKey, range, which);
  } catch (error) {
    if (error instanceof ObjectMissingError) throw new HttpProblem(404, 'not-found', 'No such asset.');
    throw error;
  }
}

/**
 * `GET /api/anime/assets/{id}`: the bytes of a result, with Range support for video;
 * `GET /api/anime/assets/{id}/thumbnail`: its 384 px WebP thumbnail or poster.
 */
export const assetRoutes: FastifyPluginAsyncTypebox<{ store: Store; signer: UrlSigner } & DeliveryOptions> = async (app, options) => {
  for (const which of ['original', 'thumbnail'] as const) {
    app.get(
      which === 'original' ? '/assets/:id' : '/assets/:id/thumbnail',
      { config: { auth: 'optional', rateClass: 'read', scope: 'jobs:read' }, schema: { tags: ['assets'], params: Params, querystring: Query } },
      async (request, reply) => {
        const asset = await openableAsset(options.store, options.signer, request.params.id, {
          principal: request.principal,
          expires: request.query.expires === undefined ? undefined : Number(request.query.expires),
          signature: request.query.signature,
        });
        return deliverAsset(request, reply, asset, { ...options, which, download: request.query.download !== undefined });
      },
    );
  }
};
