/**
 * Limits: rate limits per policy (memory, or Redis in scale-out) and per-user job quotas. Owns the
 * `user_quotas` table; job counts come from production's store, users from identity's.
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { CredentialLimit } from '../access/authentication.js';
import type { Auditor } from '../audit/events.js';
import type { RatePolicyName } from '../config/config.js';
import { HttpProblem } from '../http/problem.js';
import { addRouteHook } from '../http/route-hooks.js';
import { RateLimiter, type Charge } from './limiter.js';
import { ownQuotaRoute } from './own-quota.js';
import { QuotaService } from './quotas.js';
import { MemoryRateStore, RedisRateStore } from './rate-store.js';
import { quotaRoutes } from './routes.js';
import { StorageQuota } from './storage-quota.js';

export interface LimitServices {
  /** rate limits per class (memory, or Redis when REDIS_URL is set) */
  limiter: RateLimiter;
  quotas: QuotaService;
  /** the bytes of results each user may keep */
  storage: StorageQuota;
}

declare module 'fastify' {
  interface FastifyInstance {
    limits: LimitServices;
  }
  interface FastifyRequest {
    /** rate-limit charges made for this request so far (their headers go on the answer) */
    rateCharges: Charge[] | null;
  }
}

export interface LimitsOptions {
  limiter: RateLimiter;
  quotas: QuotaService;
  audit: Auditor;
}

/** A user's budget is theirs wherever they call from; an anonymous caller's is their address's. */
function subjectOf(request: FastifyRequest): string {
  return request.principal ? `u:${request.principal.userId}` : `a:${request.ip}`;
}

/** Sign-in attempts per account, keyed by a hash so no address book sits in Redis. */
/** A field of a body not yet validated: limits are charged before validation. */
function fieldOf(body: unknown, name: string): unknown {
  return typeof body === 'object' && body !== null ? Reflect.get(body, name) : undefined;
}

function accountOf(body: unknown): string | null {
  const email = fieldOf(body, 'email');
  if (typeof email !== 'string' || email.length === 0 || email.length > 320) return null;
  return `e:${createHash('sha256').update(email.trim().toLowerCase()).digest('base64url')}`;
}

/**
 * Charges one policy for this request; its headers go on the answer, a refusal is audited and
 * thrown. Settled at once in memory (a refusal is thrown), a promise with Redis (a refusal rejects).
 */
function chargeRequest(
  limiter: RateLimiter,
  audit: Auditor,
  request: FastifyRequest,
  reply: FastifyReply,
  policy: RatePolicyName,
  subject: string,
  cost = 1,
): void | Promise<void> {
  const earlier = request.rateCharges ?? [];
  let made: Charge | Promise<Charge>;
  try {
    made = limiter.consume(policy, subject, cost, earlier);
  } catch (error) {
    return refuseRequest(audit, request, policy, error);
  }
  if (made instanceof Promise) {
    return made.then(
      (charge) => keepCharge(limiter, request, reply, earlier, charge),
      (error: unknown) => refuseRequest(audit, request, policy, error),
    );
  }
  keepCharge(limiter, request, reply, earlier, made);
}

function keepCharge(limiter: RateLimiter, request: FastifyRequest, reply: FastifyReply, earlier: Charge[], made: Charge): void {
  request.rateCharges = [...earlier, made];
  reply.headers(limiter.headers(request.rateCharges));
}

function refuseRequest(audit: Auditor, request: FastifyRequest, policy: RatePolicyName, error: unknown): never {
  if (error instanceof HttpProblem && error.status === 429) auditRejection(audit, request, policy);
  throw error;
}

function auditRejection(audit: Auditor, request: FastifyRequest, policy: RatePolicyName): void {
  audit.record({
    action: 'ratelimit.reject',
    outcome: 'denied',
    actorId: request.principal?.userId ?? null,
    ip: request.ip,
    requestId: request.id,
    detail: { policy, route: request.routeOptions.url ?? null },
  });
}

/**
 * Refused credentials for the `authentication` plugin: each one is an anonymous request of its
 * address. Once that address's `anonymous` window is spent, credentials are refused with the 429
 * before being verified, unless the authenticator already knows them good without doing the work
 * (a token it verified or issued, a cached API key): a user behind the same NAT as a flood keeps
 * working; a valid token this instance has not seen waits for the window.
 */
export function credentialLimit(limiter: RateLimiter, audit: Auditor): CredentialLimit {
  return {
    check(request) {
      const resetMs = limiter.spentFor('anonymous', `a:${request.ip}`);
      if (resetMs === 0) return;
      auditRejection(audit, request, 'anonymous');
      throw limiter.refuse('anonymous', resetMs);
    },
    refused: async (request, reply) => chargeRequest(limiter, audit, request, reply, 'anonymous', `a:${request.ip}`),
  };
}

/**
 * Rate limits and job quotas for every route, from its `config.rateClass` and
 * `config.jobQuota`. Its onRequest hook needs the principal: the plugin depends on `access`.
 *
 * - `signin`: per client address before the body is read, then per account once it is parsed.
 * - `refresh`: per client address, whether or not a principal is known.
 * - `generation`: per user, weighted by the body's `type` (a video costs more than an image);
 *   charged before validation so malformed submissions are not free.
 * - anonymous callers: the `anonymous` policy per address, whatever the route's class.
 * - signed-in callers: the route's class (`read` when it names none) per user.
 */
const limitHooks = fp(async (app: FastifyInstance, options: LimitsOptions) => {
  const { limiter, quotas, audit } = options;
  app.decorateRequest('rateCharges', null);

  const charge = (request: FastifyRequest, reply: FastifyReply, policy: RatePolicyName, subject: string, cost = 1) =>
    chargeRequest(limiter, audit, request, reply, policy, subject, cost);

  const chargeOnRequest = (request: FastifyRequest, reply: FastifyReply) => {
    const rateClass = request.is404 ? undefined : request.routeOptions.config.rateClass;
    if (rateClass === 'signin') return charge(request, reply, 'signin-ip', `a:${request.ip}`);
    // Spending a refresh token is not a password guess: it has a budget of its own, so reloading
    // studio tabs never uses up the address's sign-in attempts.
    if (rateClass === 'refresh') return charge(request, reply, 'refresh', `a:${request.ip}`);
    if (rateClass === 'generation') return;
    if (!request.principal) return charge(request, reply, 'anonymous', `a:${request.ip}`);
    return charge(request, reply, rateClass ?? 'read', subjectOf(request));
  };
  // Callback style: a charge the memory store answers at once costs no promise and no extra turn.
  app.addHook('onRequest', (request, reply, done) => {
    let pending: void | Promise<void>;
    try {
      pending = chargeOnRequest(request, reply);
    } catch (error) {
      done(error as Error);
      return;
    }
    if (pending) pending.then(() => done(), done);
    else done();
  });

  app.addHook('onRoute', (route) => {
    const { rateClass, jobQuota } = route.config ?? {};
    if (rateClass === 'generation') {
      addRouteHook(route, 'preValidation', async (request, reply) => {
        const type = fieldOf(request.body, 'type');
        const cost = type === 'video' ? limiter.costs.video : limiter.costs.image;
        await charge(request, reply, 'generation', subjectOf(request), cost);
      });
    }
    if (rateClass === 'signin') {
      addRouteHook(route, 'preValidation', async (request, reply) => {
        // per account *and* address: a budget of the account alone would let anyone lock it
        const account = accountOf(request.body);
        if (account) await charge(request, reply, 'signin-account', `${account}:${request.ip}`);
      });
    }
    if (jobQuota) {
      addRouteHook(route, 'preHandler', async (request) => {
        if (request.principal) await quotas.assertRoomForJob(request.principal.userId);
      });
    }
  });
});

/** Builds the limiter and the quotas, charges refused credentials, and guards every route. */
export const limits = fp(
  async (app: FastifyInstance) => {
    const { config, redis, audit, metrics } = app;
    const rateStore = redis ? new RedisRateStore(redis) : new MemoryRateStore();
    if (rateStore instanceof RedisRateStore) await rateStore.ready();
    const limiter = new RateLimiter(config.limits, rateStore, app.log, {
      rejected: (policy) => metrics.rateLimited(policy),
      storeFailed: (policy) => metrics.rateStoreFailed(policy),
    });
    const quotas = new QuotaService(app.store, config.limits, audit);
    const storage = new StorageQuota(app.store, config.assets.storageQuotaBytes);
    app.decorate('limits', { limiter, quotas, storage });
    app.access.limitCredentials(credentialLimit(limiter, audit));
    await app.register(limitHooks, { limiter, quotas, audit });
  },
  { name: 'limits', dependencies: ['store', 'audit', 'observability', 'access'] },
);

/** Admin quota overrides and the caller's own quota, under `/api/anime`. */
export async function limitsApi(app: FastifyInstance) {
  const { quotas } = app.limits;
  await app.register(quotaRoutes, { prefix: '/api/anime', quotas });
  await app.register(ownQuotaRoute, { prefix: '/api/anime', quotas, limits: app.config.limits });
}
