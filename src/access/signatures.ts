import type { FastifyContextConfig, FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Redis } from 'ioredis';
import type { Auditor } from '../audit/events.js';
import { HttpProblem } from '../http/problem.js';
import { addRouteHook } from '../http/route-hooks.js';
import {
  MemoryReplayGuard,
  SIGNATURE_ALG,
  SIGNATURE_LABEL,
  verifyRequestSignature,
  type ReplayGuard,
  type SignatureFailure,
} from './http-signatures.js';

/** Remembers used signatures in Redis, shared by every instance: one atomic `SET NX EX`. */
export class RedisReplayGuard implements ReplayGuard {
  constructor(private readonly redis: Redis) {}

  async firstUse(key: string, ttlSeconds: number): Promise<boolean> {
    const reply = await this.redis.set(key, '1', 'EX', Math.ceil(ttlSeconds), 'NX');
    return reply === 'OK';
  }
}

export interface SignatureOptions {
  /** the public origin the target URI is built from (never the Host header) */
  publicUrl: string;
  /** the decrypted signing secret of a live API key */
  lookupSecret(keyId: string): Promise<Buffer | undefined>;
  replay: ReplayGuard;
  audit: Auditor;
}

export function replayGuardFor(redis: Redis | null): ReplayGuard {
  return redis ? new RedisReplayGuard(redis) : new MemoryReplayGuard();
}

/**
 * Critical routes (`config.critical`, and admin routes other than reads) called with an API key need an RFC 9421 signature by that
 * same key over method, target URI and Content-Digest, at most 5 minutes old, used once. Runs after
 * the body is read (the digest covers its bytes) and before it is validated, on those routes only.
 */
export const requestSignatures = fp(async (app: FastifyInstance, options: SignatureOptions) => {
  const origin = options.publicUrl.replace(/\/+$/, '');

  const verify = async (request: FastifyRequest, route: string): Promise<void> => {
    const principal = request.principal;
    if (principal?.via !== 'api-key') return;
    const keyId = principal.apiKeyId!;

    const refuse = (reason: SignatureFailure | 'unsupported-body'): never => {
      options.audit.record({
        action: 'auth.signature',
        outcome: 'denied',
        actorId: principal.userId,
        target: `api-key:${keyId}`,
        ip: request.ip,
        requestId: request.id,
        detail: { reason, method: request.method, route },
      });
      throw reason === 'missing' ? signatureRequired(keyId) : signatureInvalid(reason);
    };

    // A body some other parser read has no raw bytes to digest: refuse rather than guess.
    if (request.body !== undefined && request.body !== null && request.rawBody === undefined) refuse('unsupported-body');

    let result;
    try {
      result = await verifyRequestSignature(
        { method: request.method, url: origin + request.url, headers: request.headers, body: request.rawBody },
        {
          lookupSecret: (id) => (id === keyId ? options.lookupSecret(id) : undefined),
          replay: options.replay,
        },
      );
    } catch (error) {
      request.log.error({ err: error }, 'signature check failed');
      throw new HttpProblem(503, 'unavailable', 'The signature cannot be checked right now; retry later.', {
        headers: { 'retry-after': '1' },
      });
    }
    if (!result.ok) refuse(result.reason);
  };

  app.addHook('onRoute', (route) => {
    const config = route.config ?? {};
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!methods.some((method) => isCritical(config, method))) return;
    addRouteHook(route, 'preValidation', async (request) => {
      if (isCritical(config, request.method)) await verify(request, route.url);
    });
  });
});

/** Routes that say so, and every admin route that changes something. */
function isCritical(config: FastifyContextConfig, method: string): boolean {
  return config.critical === true || (config.role === 'admin' && !SAFE_METHODS.has(method));
}
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function signatureRequired(keyId: string): HttpProblem {
  return new HttpProblem(401, 'signature-required', 'This operation needs an RFC 9421 signature made with your API key.', {
    extensions: { reason: 'missing' },
    headers: {
      'accept-signature': `${SIGNATURE_LABEL}=("@method" "@target-uri" "content-digest");created;keyid="${keyId}";alg="${SIGNATURE_ALG}";nonce`,
    },
  });
}

function signatureInvalid(reason: string): HttpProblem {
  return new HttpProblem(401, 'signature-invalid', `The request signature was refused (${reason}).`, { extensions: { reason } });
}
