import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { replayGuardFor, requestSignatures } from './access/signatures.js';
import type { Principal } from './access/principal.js';
import { stepUp } from './access/step-up.js';
import { checkpointKey, startCheckpoints } from './audit/anchor.js';
import type { AuditEvent, Auditor } from './audit/events.js';
import { auditRequests, auditRoutes } from './audit/routes.js';
import { startRetention, StoreAuditor } from './audit/service.js';
import { assetRoutes } from './assets/routes.js';
import { loadUrlSigningKey } from './assets/signed-urls.js';
import { ConfigError, type Config } from './config/config.js';
import { localSecret, randomKey } from './config/local-secrets.js';
import { migrate, openStore, type Store } from './db/database.js';
import { StoreOutage } from './db/outage.js';
import { openRedis } from './db/redis.js';
import { authentication } from './http/auth.js';
import { errorHandling } from './http/errors.js';
import { healthRoutes } from './http/health.js';
import { galleryRoutes } from './gallery/routes.js';
import { GalleryService } from './gallery/service.js';
import { loggerOptions, RequestLogController } from './http/logging.js';
import { openApi } from './http/openapi.js';
import { Readiness, readinessMetric } from './http/readiness.js';
import { rawJsonBody } from './http/raw-body.js';
import { clientErrorHandler, frameworkErrors } from './http/refusals.js';
import { requestId } from './http/request-id.js';
import { securityHeaders } from './http/security.js';
import { studio } from './http/studio.js';
import { ApiKeyAuthenticator } from './identity/api-keys/authenticator.js';
import { apiKeyRoutes } from './identity/api-keys/routes.js';
import { browserSessionRoutes } from './identity/browser-session.js';
import { passkeyRoutes } from './identity/passkeys/routes.js';
import { PasskeyService } from './identity/passkeys/service.js';
import { ApiKeyService } from './identity/api-keys/service.js';
import { SessionAuthenticator } from './identity/authenticator.js';
import { createEncryptor, parseMasterKey, type Encryptor } from './identity/encryption.js';
import { loadSigningKeys, type SigningKeySet } from './identity/keys.js';
import { hashPassword } from './identity/passwords.js';
import { RevocationFeedFollower, remoteKeyLookup } from './identity/remote.js';
import { RevocationView, localPublisher, redisPublisher, type RevocationPublisher } from './identity/revocations.js';
import { identityRoutes, verifyRoute } from './identity/routes.js';
import { IdentityService } from './identity/service.js';
import { SsoProviders } from './identity/sso/providers.js';
import { ssoRoutes } from './identity/sso/routes.js';
import { SsoService } from './identity/sso/service.js';
import { MemoryLoginThrottle, RedisLoginThrottle } from './identity/throttle.js';
import { AccessTokenVerifier, localKeyLookup } from './identity/tokens.js';
import { RateLimiter } from './limits/limiter.js';
import { Metrics } from './limits/metrics.js';
import { credentialLimit, limits } from './limits/plugin.js';
import { QuotaService } from './limits/quotas.js';
import { MemoryRateStore, RedisRateStore } from './limits/rate-store.js';
import { ownQuotaRoute } from './limits/own-quota.js';
import { metricsRoutes, quotaRoutes } from './limits/routes.js';
import { registerFleetMetrics } from './production/fleet/metrics.js';
import { fleetShareRoutes } from './production/fleet/routes.js';
import { productionRoutes } from './production/routes.js';
import { createProduction, type ProductionServices } from './production/runtime.js';
import { ProductionService } from './production/service.js';
import { lifecycleRoutes, storageQuota } from './lifecycle/routes.js';
import { LifecycleService } from './lifecycle/service.js';
import { shareRoutes } from './sharing/routes.js';
import { ShareService } from './sharing/service.js';
import type { Renderer } from './renderers/renderer.js';

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
  /** secrets at rest (TOTP secrets, API-key signing secrets); aad = the owning row's id */
  encryptor: Encryptor;
  identity: IdentityService;
  apiKeys: ApiKeyService;
  /** what the bearer hot path checks after the signature: revoked sessions, changed users */
  revocations: RevocationView;
  /** the job pipeline: queue, renderer, worker, assets, events */
  production: ProductionServices;
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
  /** split deployment: only the auth service (`/api/auth` + health), or only the API (tokens checked against CELFORGE_AUTH_URL) */
  only?: 'api' | 'auth';
  /** run the embedded job worker in this process (default true; never with `only`) */
  worker?: boolean;
  /** a renderer to use instead of the configured one (tests) */
  renderer?: Renderer;
  /** the built studio to serve at `/` (default web/dist; tests pass their own) */
  studioRoot?: string;
}

/** The master key for secrets at rest: configured (env, *_FILE, Vault), else made once in the data dir. */
function masterEncryptor(config: Config): Encryptor {
  const key = parseMasterKey(config.secrets.encryptionKey ?? localSecret(config.dataDir, 'encryption-key', randomKey));
  const id = `k${createHash('sha256').update(key).digest('base64url').slice(0, 10)}`;
  return createEncryptor({ current: { id, key } });
}

/** Builds the whole service from a config: the server, the tests and the benchmark all start here. */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  // An API node of a split deployment trusts the auth service's keys and revocation feed. Without
  // CELFORGE_AUTH_URL, `--only api` is a full API node that leaves rendering to `celforge worker`s.
  const remote = config.authUrl !== undefined && options.only !== 'auth';
  if (remote && !config.secrets.serviceToken) {
    throw new ConfigError("CELFORGE_AUTH_URL needs CELFORGE_SERVICE_TOKEN, the token of the auth service's revocation feed");
  }
  const store = options.store ?? openStore(config);
  await migrate(store);

  let signingKeys = loadSigningKeys({ dataDir: config.dataDir, signingKey: config.secrets.signingKey });
  const keys = () => signingKeys;
  // `celforge keys rotate` writes the key file; a running server takes the new key within a minute.
  const keyReload = config.secrets.signingKey
    ? undefined
    : setInterval(() => {
        try {
          signingKeys = loadSigningKeys({ dataDir: config.dataDir });
        } catch {
          // keep the keys in use; the next start reports a broken key file
        }
      }, 60_000).unref();
  const verifier = new AccessTokenVerifier(remote ? remoteKeyLookup(config.authUrl!) : localKeyLookup(keys), config.accessTokenTtlSeconds);
  const redis = config.redisUrl ? openRedis(config.redisUrl, config.redisPrefix) : null;
  const encryptor = masterEncryptor(config);
  const revocations = new RevocationView(config.accessTokenTtlSeconds);

  // requests refused before routing are audited too; the auditor is made just below
  let recordRefusal: (event: AuditEvent) => void = () => {};
  const app = Fastify({
    logger: loggerOptions(config.logLevel),
    logController: new RequestLogController(config.logLevel),
    genReqId: requestId,
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { maxParamLength: 200 },
    frameworkErrors: frameworkErrors(() => recordRefusal),
    clientErrorHandler: clientErrorHandler(() => recordRefusal),
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setValidatorCompiler(TypeBoxValidatorCompiler);

  const outage = new StoreOutage(store, app.log);
  // while the store is out, the outage is logged once instead of each retry of the audit writer
  const audit = new StoreAuditor(store, { onError: (message, error) => error !== undefined && outage.report(error) ? undefined : app.log.error({ err: error }, message) });
  recordRefusal = (event) => audit.record(event);
  const metrics = new Metrics(store);
  const rateStore = redis ? new RedisRateStore(redis) : new MemoryRateStore();
  if (rateStore instanceof RedisRateStore) await rateStore.ready();
  const limiter = new RateLimiter(config.limits, rateStore, app.log, {
    rejected: (policy) => metrics.rateLimited(policy),
    storeFailed: (policy) => metrics.rateStoreFailed(policy),
  });
  const quotas = new QuotaService(store, config.limits, audit);
  // Late-bound: the identity service, made below, tells the key cache of user changes.
  const assertSteppedUp = (principal: Principal): Promise<void> => identity.assertSteppedUp(principal);
  const apiKeys = new ApiKeyService({ store, encryptor, audit, redis, channel: `${config.redisPrefix}apikeys`, log: app.log, assertSteppedUp });

  const onError = (error: unknown) => app.log.warn({ err: error }, 'revocation view');
  let publisher: RevocationPublisher;
  let follower: RevocationFeedFollower | undefined;
  if (remote) {
    publisher = localPublisher(revocations);
    follower = new RevocationFeedFollower({ authUrl: config.authUrl!, serviceToken: config.secrets.serviceToken!, view: revocations, onError });
    follower.start();
    await follower.waitUntilReady(3_000);
  } else if (redis) {
    publisher = await redisPublisher({ view: revocations, shared: redis, redisUrl: config.redisUrl!, prefix: config.redisPrefix, store, onError });
  } else {
    publisher = localPublisher(revocations);
    await revocations.loadFrom(store);
    // Changes made by HTTP here apply at once; a resync picks up those of `celforge user …` in another process.
    revocations.resyncEvery(store, 5_000, onError);
  }
  const identity: IdentityService = new IdentityService({
    config,
    store,
    keys,
    revocations: publisher,
    throttle: redis ? new RedisLoginThrottle(redis) : new MemoryLoginThrottle(),
    encryptor,
    audit,
    dummyHash: await hashPassword(randomBytes(16).toString('hex')),
    tokenCache: remote ? undefined : verifier,
    apiKeys,
    // late-bound: the passkey service, made just below, finishes its sign-ins through this one
    passkeys: { has: (userId): Promise<boolean> => passkeys.has(userId), secondFactorOptions: (userId) => passkeys.secondFactorOptions(userId) },
  });
  const passkeys: PasskeyService = new PasskeyService({ store, audit, identity, publicUrl: config.publicUrl, apiKeys });
  // User changes this instance learns of from elsewhere (the store resync after `celforge user …`,
  // the feed) reach the key cache too.
  revocations.subscribe((event) => {
    if (event.kind === 'user') apiKeys.forgetUser(event.userId);
  });

  const production = await createProduction(config, store, app.log, {
    worker: options.worker !== false && options.only === undefined,
    renderer: options.renderer,
    outage,
  });
  registerFleetMetrics(metrics.registry, production.renderer, store);

  const services: Services = {
    config,
    store,
    redis,
    keys,
    verifier,
    audit,
    limiter,
    quotas,
    metrics,
    encryptor,
    identity,
    apiKeys,
    revocations,
    production,
  };
  app.decorate('services', services);
  const stopRetention = startRetention(store, config.auditRetentionDays, (error) => app.log.error({ err: error }, 'audit: retention failed'));
  const stopCheckpoints = startCheckpoints({ store, key: checkpointKey(loadUrlSigningKey({ dataDir: config.dataDir, urlSigningKey: config.secrets.urlSigningKey })), file: config.auditCheckpointFile, log: app.log });
  app.addHook('onClose', async () => {
    clearInterval(keyReload);
    stopRetention();
    outage.close();
    await production.stop();
    follower?.close();
    await publisher.close();
    await services.audit.close();
    await stopCheckpoints();
    apiKeys.close();
    redis?.disconnect();
    if (!options.store) await store.close();
  });

  // The studio is served wherever the API is (not by a split auth service).
  const web = options.only === 'auth' ? undefined : studio(options.studioRoot);
  await app.register(errorHandling, { outage, fallback: web?.fallback });
  await app.register(auditRequests, { audit });
  await app.register(securityHeaders, { corsOrigins: config.corsOrigins });
  await app.register(openApi);
  await app.register(rawJsonBody);
  const bearer = new SessionAuthenticator(verifier, revocations);
  await app.register(authentication, {
    bearer,
    apiKey: new ApiKeyAuthenticator(apiKeys, audit),
    limit: credentialLimit(limiter, audit),
  });
  await app.register(stepUp, { assertSteppedUp: (principal) => identity.assertSteppedUp(principal) });
  await app.register(limits, { limiter, quotas, metrics, audit });
  await app.register(requestSignatures, {
    publicUrl: config.publicUrl,
    lookupSecret: (id) => apiKeys.signingSecret(id),
    replay: replayGuardFor(redis),
    audit,
  });

  // /ready is false while revocations cannot be trusted (feed or Redis subscriber down): take this node out.
  const readiness = new Readiness({
    store,
    dataDir: config.dataDir,
    // the auth service keeps no assets
    assetsDir: options.only === 'auth' ? null : path.join(config.dataDir, 'assets'),
    dependenciesReady: () => revocations.isReady(),
  });
  readinessMetric(metrics.registry, readiness);
  await app.register(healthRoutes, { prefix: '/api/anime', readiness });
  if (remote) {
    await app.register(verifyRoute, { prefix: '/api/auth', verifier });
  } else {
    await app.register(identityRoutes, {
      prefix: '/api/auth',
      store,
      keys,
      identity,
      verifier,
      view: revocations,
      serviceToken: config.secrets.serviceToken,
    });
    await app.register(apiKeyRoutes, { prefix: '/api/auth', keys: apiKeys });
    await app.register(passkeyRoutes, { prefix: '/api/auth', passkeys });
    await app.register(browserSessionRoutes, { prefix: '/api/auth', identity, store, publicUrl: config.publicUrl, passkeys });
    const sso = new SsoService({ store, identity, providers: new SsoProviders(config.sso), revocations: publisher, audit, publicUrl: config.publicUrl });
    await app.register(ssoRoutes, { prefix: '/api/auth', sso, identity, store, publicUrl: config.publicUrl });
  }
  if (options.only !== 'auth') {
    const { queue, renderer, events, signer, assets } = production;
    const jobs = new ProductionService({ store, queue, events, signer, audit, renderer, admit: (trx, userId) => quotas.admitJob(trx, userId) });
    const lifecycle = new LifecycleService({
      store,
      storage: assets,
      audit,
      production: jobs,
      identity,
      apiKeys,
      defaultStorageBytes: config.assets.storageQuotaBytes,
      log: app.log,
    });
    await app.register(storageQuota, { service: lifecycle });
    const gallery = new GalleryService({ store, signer, audit, production: jobs });
    await app.register(productionRoutes, { prefix: '/api/anime', service: jobs, events });
    await app.register(assetRoutes, { prefix: '/api/anime', store, signer, storage: assets, delivery: config.assets.delivery });
    await app.register(galleryRoutes, { prefix: '/api/anime', service: gallery });
    await app.register(lifecycleRoutes, { prefix: '/api/anime', service: lifecycle });
    const shares = new ShareService({ store, audit, production: jobs });
    await app.register(shareRoutes, { prefix: '/api/anime', service: shares, publicUrl: config.publicUrl, storage: assets, delivery: config.assets.delivery });
    await app.register(auditRoutes, { prefix: '/api/anime', store, audit });
    await app.register(quotaRoutes, { prefix: '/api/anime', quotas });
    await app.register(ownQuotaRoute, { prefix: '/api/anime', quotas, limits: config.limits });
    await app.register(fleetShareRoutes, { prefix: '/api/anime', store, audit });
    await app.register(metricsRoutes, { metrics, bearer, metricsToken: config.secrets.metricsToken, assertSteppedUp });
    if (options.extraRoutes) await options.extraRoutes(app, services);
    await web?.register(app);
  }

  await app.ready();
  await production.start();
  return app;
}
