import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Auditor } from './audit/events.js';
import { auditRequests, auditRoutes } from './audit/routes.js';
import { startRetention, StoreAuditor } from './audit/service.js';
import type { Config } from './config/config.js';
import { migrate, openStore, type Store } from './db/database.js';
import { openRedis } from './db/redis.js';
import { authentication } from './http/auth.js';
import { errorHandling } from './http/errors.js';
import { healthRoutes } from './http/health.js';
import { loggerOptions } from './http/logging.js';
import { openApi } from './http/openapi.js';
import { requestId } from './http/request-id.js';
import { securityHeaders } from './http/security.js';
import { SessionAuthenticator } from './identity/authenticator.js';
import { loadSigningKeys, type SigningKeySet } from './identity/keys.js';
import { identityRoutes } from './identity/routes.js';
import { replayGuardFor, requestSignatures } from './access/signatures.js';
import { localSecret, randomKey } from './config/local-secrets.js';
import { rawJsonBody } from './http/raw-body.js';
import { ApiKeyAuthenticator } from './identity/api-keys/authenticator.js';
import { apiKeyRoutes } from './identity/api-keys/routes.js';
import { ApiKeyService } from './identity/api-keys/service.js';
import { createEncryptor, parseMasterKey, type Encryptor } from './identity/encryption.js';
import { AccessTokenVerifier, localKeyLookup } from './identity/tokens.js';
import { RateLimiter } from './limits/limiter.js';
import { Metrics } from './limits/metrics.js';
import { limits } from './limits/plugin.js';
import { QuotaService } from './limits/quotas.js';
import { MemoryRateStore, RedisRateStore } from './limits/rate-store.js';
import { metricsRoutes, quotaRoutes } from './limits/routes.js';

/** What the routes, the command line, the tests and the benchmark share. */
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
  /** secrets at rest (TOTP, API-key signing secrets) */
  encryptor: Encryptor;
  apiKeys: ApiKeyService;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

export interface BuildOptions {
  /** an open store to use (not closed with the app); by default the app opens its own */
  store?: Store;
  /** extra routes mounted before the app is ready (the benchmark's baseline route) */
  extraRoutes?: (app: FastifyInstance, services: Services) => Promise<void>;
}

/** Builds the whole service from a config: the server, the tests and the benchmark all start here. */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const store = options.store ?? openStore(config);
  await migrate(store);

  const signingKeys = loadSigningKeys({ dataDir: config.dataDir, signingKey: config.secrets.signingKey });
  const keys = () => signingKeys;
  const verifier = new AccessTokenVerifier(localKeyLookup(keys));
  const redis = config.redisUrl ? openRedis(config.redisUrl, config.redisPrefix) : null;

  const app = Fastify({
    logger: loggerOptions(config.logLevel),
    genReqId: requestId,
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { maxParamLength: 200 },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  const audit = new StoreAuditor(store, { onError: (message, error) => app.log.error({ err: error }, message) });
  const metrics = new Metrics(store);
  const rateStore = redis ? new RedisRateStore(redis) : new MemoryRateStore();
  if (rateStore instanceof RedisRateStore) await rateStore.ready();
  const limiter = new RateLimiter(config.limits, rateStore, app.log, {
    rejected: (policy) => metrics.rateLimited(policy),
    storeFailed: (policy) => metrics.rateStoreFailed(policy),
  });
  const quotas = new QuotaService(store, config.limits, audit);
  const masterKey = parseMasterKey(
    config.secrets.encryptionKey ?? localSecret(config.dataDir, 'encryption-key', randomKey),
  );
  const encryptor = createEncryptor({ current: { id: 'k1', key: masterKey } });
  const apiKeys = new ApiKeyService({ store, encryptor, audit, redis, channel: `${config.redisPrefix}apikeys`, log: app.log });
  const services: Services = { config, store, redis, keys, verifier, audit, limiter, quotas, metrics, encryptor, apiKeys };
  app.decorate('services', services);
  const stopRetention = startRetention(store, config.auditRetentionDays, (error) => app.log.error({ err: error }, 'audit: retention failed'));
  app.addHook('onClose', async () => {
    stopRetention();
    await services.audit.flush();
    apiKeys.close();
    redis?.disconnect();
    if (!options.store) await store.close();
  });

  await app.register(errorHandling);
  await app.register(auditRequests, { audit });
  await app.register(securityHeaders, { corsOrigins: config.corsOrigins });
  await app.register(openApi);
  await app.register(rawJsonBody);
  const bearer = new SessionAuthenticator(verifier, store);
  await app.register(authentication, { bearer, apiKey: new ApiKeyAuthenticator(apiKeys, audit) });
  await app.register(limits, { limiter, quotas, metrics });
  await app.register(requestSignatures, {
    publicUrl: config.publicUrl,
    lookupSecret: (id) => apiKeys.signingSecret(id),
    replay: replayGuardFor(redis),
    audit,
  });

  await app.register(healthRoutes, { prefix: '/api/anime', store });
  await app.register(auditRoutes, { prefix: '/api/anime', store });
  await app.register(identityRoutes, { prefix: '/api/auth', store, keys });
  await app.register(apiKeyRoutes, { prefix: '/api/auth', keys: apiKeys });
  await app.register(quotaRoutes, { prefix: '/api/anime', quotas });
  await app.register(metricsRoutes, { metrics, bearer, metricsToken: config.secrets.metricsToken });
  if (options.extraRoutes) await options.extraRoutes(app, services);

  await app.ready();
  return app;
}
