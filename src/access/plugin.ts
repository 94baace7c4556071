/**
 * Access: the policy every request passes — who is calling (authentication), what their role and
 * API-key scopes allow, step-up for admin routes, RFC 9421 signatures on critical routes. Owns no
 * table; `Principal` and `Role` are its vocabulary.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { authentication, type CredentialLimit } from './authentication.js';
import { replayGuardFor, requestSignatures } from './signatures.js';
import { stepUp } from './step-up.js';

export interface AccessServices {
  /** Refused credentials are charged to their address by this limit (the limits capability sets it). */
  limitCredentials(limit: CredentialLimit): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    access: AccessServices;
  }
}

export const access = fp(
  async (app: FastifyInstance) => {
    const { config, redis, audit, identity } = app;
    let limit: CredentialLimit | undefined;
    app.decorate('access', {
      limitCredentials(given: CredentialLimit) {
        limit = given;
      },
    });
    await app.register(authentication, {
      bearer: identity.bearer,
      apiKey: identity.apiKey,
      limit: {
        check: (request) => limit?.check(request),
        refused: async (request, reply) => limit?.refused(request, reply),
      },
    });
    await app.register(stepUp, { assertSteppedUp: (principal) => identity.service.assertSteppedUp(principal) });
    await app.register(requestSignatures, {
      publicUrl: config.publicUrl,
      lookupSecret: (id) => identity.apiKeys.signingSecret(id),
      replay: replayGuardFor(redis),
      audit,
    });
  },
  { name: 'access', dependencies: ['store', 'audit', 'identity'] },
);
