import cors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/**
 * The security headers of every answer (OWASP REST Security Cheat Sheet, plus the referrer and
 * cross-origin resource policies). They never vary, so they are one table applied in one step
 * rather than a middleware per header. Headers that only act on documents a browser renders
 * (Cross-Origin-Opener-Policy, Origin-Agent-Cluster, X-XSS-Protection, X-DNS-Prefetch-Control,
 * X-Download-Options, X-Permitted-Cross-Domain-Policies) have nothing to act on in a JSON API;
 * the one HTML page, Swagger UI, sets its own Content-Security-Policy.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'cross-origin-resource-policy': 'same-origin',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // API answers are private to their caller; a route that may be cached says so itself.
  'cache-control': 'no-store',
};

/** Security headers on every answer, CORS only for the configured origins, the request id echoed. */
export const securityHeaders = fp(async (app: FastifyInstance, options: { corsOrigins: string[] }) => {
  app.addHook('onRequest', (request, reply, done) => {
    reply.headers(SECURITY_HEADERS);
    reply.header('x-request-id', request.id);
    done();
  });

  // No origin configured: no cross-origin access at all, so no CORS handling (and no Vary: Origin).
  if (options.corsOrigins.length === 0) return;
  const allowed = new Set(options.corsOrigins);
  await app.register(cors, {
    // Exact origin match only; an unlisted origin gets no Access-Control-* headers at all.
    origin: (origin, callback) => callback(null, origin !== undefined && allowed.has(origin)),
    methods: ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE'],
    allowedHeaders: ['Authorization', 'Content-Type', 'Idempotency-Key', 'X-API-Key', 'X-Request-Id', 'Signature', 'Signature-Input', 'Content-Digest'],
    exposedHeaders: ['X-Request-Id', 'RateLimit', 'RateLimit-Policy', 'Retry-After', 'Location'],
    maxAge: 600,
    strictPreflight: true,
  });
});
