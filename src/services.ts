import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Auditor } from './audit/events.js';
import type { Config } from './config/config.js';
import type { Store } from './db/database.js';
import type { ApiKeyService } from './identity/api-keys/service.js';
import type { Encryptor } from './identity/encryption.js';
import type { SigningKeySet } from './identity/keys.js';
import type { RevocationView } from './identity/revocations.js';
import type { IdentityService } from './identity/service.js';
import type { AccessTokenVerifier } from './identity/tokens.js';
import type { RateLimiter } from './limits/limiter.js';
import type { QuotaService } from './limits/quotas.js';
import type { Metrics } from './observability/metrics.js';
import type { Production } from './production/plugin.js';

/** What the command line, the tests and the benchmark reach for: the capabilities' services in one place. */
export interface Services {
  config: Config;
  store: Store;
  /** set in scale-out mode (REDIS_URL) */
  redis: Redis | null;
  keys: () => SigningKeySet;
  verifier: AccessTokenVerifier;
  audit: Auditor;
  /** rate limits per class (memory, or Redis when REDIS_URL is set) */
  limiter: RateLimiter;
  quotas: QuotaService;
  /** Prometheus metrics of this app; `metrics.signinFailed(reason)` for the sign-in code */
  metrics: Metrics;
  /** secrets at rest (TOTP secrets, API-key signing secrets); aad = the owning row's id */
  encryptor: Encryptor;
  identity: IdentityService;
  apiKeys: ApiKeyService;
  /** what the bearer hot path checks after the signature: revoked sessions, changed users */
  revocations: RevocationView;
  /** the job pipeline: queue, renderer, worker, assets, events */
  production: Production;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

/** The façade of `app.services`, read from the capabilities' decorations once they are all registered. */
export function servicesOf(app: FastifyInstance): Services {
  const { config, store, redis, audit, metrics, identity, limits } = app;
  return {
    config,
    store,
    redis,
    keys: identity.keys,
    verifier: identity.verifier,
    audit,
    limiter: limits.limiter,
    quotas: limits.quotas,
    metrics,
    encryptor: identity.encryptor,
    identity: identity.service,
    apiKeys: identity.apiKeys,
    revocations: identity.revocations,
    production: app.production,
  };
}
