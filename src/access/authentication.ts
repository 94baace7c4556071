import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { ApiKeyScope, AuthMode, Principal, Role, RouteAccess } from './principal.js';
import { HttpProblem } from '../http/problem.js';

/** Rate-limit classes a route belongs to (the limits plugin reads them). */
export type RateClass = 'signin' | 'refresh' | 'generation' | 'read' | 'write' | 'admin';

declare module 'fastify' {
  interface FastifyContextConfig extends RouteAccess {
    rateClass?: RateClass;
    /** counts against the caller's job quotas (active jobs, jobs per day) */
    jobQuota?: boolean;
    /** with an API key, the request must carry a valid RFC 9421 signature (admin actions, deletes, publishing) */
    critical?: boolean;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    /** every route's access declaration, as registered: what the OpenAPI document and the route walk read */
    routeAccess: readonly RouteAccessEntry[];
  }
}

export interface RouteAccessEntry {
  method: string;
  url: string;
  auth: AuthMode;
  role?: Role;
  scope?: ApiKeyScope;
}

export interface Credentials {
  scheme: 'bearer' | 'apikey';
  value: string;
}

/** Turns one kind of credential into a principal, or throws an HttpProblem (401, or 503 when it cannot tell). */
export interface Authenticator {
  authenticate(value: string, request: FastifyRequest): Promise<Principal>;
  /** The principal, when this credential is known good without any costly work (a cache hit); else null. */
  known?(value: string): Principal | null;
}

/** Rate limit on refused credentials (the limits module provides it). */
export interface CredentialLimit {
  /** Throws a 429, with no store round trip, when this address may not have a new credential verified now. */
  check(request: FastifyRequest): void;
  /** Charges a refused credential to its address; throws the 429 when that does not fit. */
  refused(request: FastifyRequest, reply: FastifyReply): Promise<void>;
}

export interface Authenticators {
  bearer: Authenticator;
  /** absent: API keys are refused */
  apiKey?: Authenticator;
  limit?: CredentialLimit;
}

const TOKEN68 = /^[A-Za-z0-9._~+/-]+=*$/;

const NOT_ACCEPTED = 'api-key-not-accepted';

/** 401 for an API key where API keys are never accepted (no declared scope): the kind of credential is wrong. */
export function apiKeyNotAccepted(): HttpProblem {
  return new HttpProblem(401, NOT_ACCEPTED, 'API keys are not accepted here; this needs a signed-in session.', {
    headers: { 'www-authenticate': 'Bearer realm="celforge", error="invalid_token"' },
  });
}

export function unauthorized(detail: string, error: 'invalid_token' | 'invalid_request' = 'invalid_token'): HttpProblem {
  return new HttpProblem(401, 'unauthorized', detail, {
    headers: { 'www-authenticate': `Bearer realm="celforge", error="${error}"` },
  });
}

/**
 * The caller of a route that needs a credential: the authentication hook set it before any
 * handler runs, so this only narrows (and answers 401 should a route be mounted without the hook).
 */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw unauthorized('Sign in to use this.', 'invalid_request');
  return request.principal;
}

/**
 * Reads `Authorization: <scheme> <token>` (scheme case-insensitive, RFC 7235) or `X-API-Key`.
 * Anything but exactly one scheme and one token, or both headers at once, is refused.
 */
export function readCredentials(request: FastifyRequest): Credentials | null {
  const authorization = request.headers.authorization;
  const apiKey = request.headers['x-api-key'];
  if (authorization === undefined && apiKey === undefined) return null;
  if (authorization !== undefined && apiKey !== undefined) throw unauthorized('Send one credential, not two.', 'invalid_request');
  if (apiKey !== undefined) {
    if (typeof apiKey !== 'string' || !TOKEN68.test(apiKey)) throw unauthorized('Malformed API key.', 'invalid_request');
    return { scheme: 'apikey', value: apiKey };
  }
  const parts = authorization!.split(' ');
  const [scheme, value] = parts;
  if (parts.length !== 2 || !scheme || !value || !TOKEN68.test(value)) {
    throw unauthorized('Use "Authorization: Bearer <token>" or "Authorization: ApiKey <key>".', 'invalid_request');
  }
  const lower = scheme.toLowerCase();
  if (lower !== 'bearer' && lower !== 'apikey') throw unauthorized('Unsupported authorization scheme.', 'invalid_request');
  return { scheme: lower, value };
}

/**
 * Authentication and coarse access for every route, from its `config` (auth defaults to
 * required: a route is public only when it says so). Runs before the body is parsed. With `limit`,
 * every 401 here counts as an anonymous request of the client address.
 */
export const authentication = fp(async (app: FastifyInstance, options: Authenticators) => {
  app.decorateRequest('principal', null);
  const table: RouteAccessEntry[] = [];
  app.decorate('routeAccess', table);
  app.addHook('onRoute', (route) => {
    const config = route.config ?? {};
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) {
      if (method === 'HEAD') continue; // mirrors its GET
      table.push({ method, url: route.url, auth: config.auth ?? 'required', role: config.role, scope: config.scope });
    }
  });
  app.addHook('onRequest', async (request, reply) => {
    if (request.is404) return;
    const access = request.routeOptions.config;
    const mode = access.auth ?? 'required';
    if (mode === 'public') return;
    let principal: Principal;
    try {
      const credentials = readCredentials(request);
      if (!credentials) {
        if (mode === 'optional') return;
        throw unauthorized('Sign in to use this.', 'invalid_request');
      }
      // Deny by default: a route that declares no scope is not for API keys. Refused before any
      // lookup, so it tells nothing about the key and costs nothing to charge.
      if (credentials.scheme === 'apikey' && (!options.apiKey || access.scope === undefined)) throw apiKeyNotAccepted();
      const authenticator = credentials.scheme === 'bearer' ? options.bearer : options.apiKey!;
      // A credential known good costs no verification, so it passes even a flooded address's limit.
      const known = authenticator.known?.(credentials.value);
      if (known) {
        principal = known;
      } else {
        options.limit?.check(request);
        principal = await authenticator.authenticate(credentials.value, request);
      }
    } catch (error) {
      if (options.limit && error instanceof HttpProblem && error.status === 401 && error.slug !== NOT_ACCEPTED) {
        await options.limit.refused(request, reply);
      }
      throw error;
    }
    request.principal = principal;
    if (access.role && principal.role !== access.role) {
      throw new HttpProblem(403, 'forbidden', 'Your role does not allow this.');
    }
    // An admin's API key acts as admin only with the "admin" scope, whatever scope the route names.
    const scopes = access.role === 'admin' ? [access.scope, 'admin'] : [access.scope];
    for (const scope of scopes) {
      if (scope && principal.scopes && !principal.scopes.includes(scope)) {
        throw new HttpProblem(403, 'insufficient-scope', `This API key lacks the "${scope}" scope.`);
      }
    }
  });
});
