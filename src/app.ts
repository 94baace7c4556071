import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Auditor } from './audit/events.js';
import { LogAuditor } from './audit/log-auditor.js';
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
import { AccessTokenVerifier, localKeyLookup } from './identity/tokens.js';
import { assetRoutes } from './assets/routes.js';
import { galleryRoutes } from './gallery/routes.js';
import { GalleryService } from './gallery/service.js';
import { productionRoutes } from './production/routes.js';
import { createProduction, type ProductionServices } from './production/runtime.js';
import { ProductionService } from './production/service.js';
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
  /** run the embedded job worker in this process (default true; false for `serve --only api` and tests) */
  worker?: boolean;
  /** a renderer to use instead of the configured one (tests) */
  renderer?: Renderer;
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
  const production = await createProduction(config, store, app.log, { worker: options.worker !== false, renderer: options.renderer });
  const services: Services = { config, store, redis, keys, verifier, audit: new LogAuditor(app.log), production };
  app.decorate('services', services);
  app.addHook('onClose', async () => {
    await production.stop();
    await services.audit.flush();
    redis?.disconnect();
    if (!options.store) await store.close();
  });

  await app.register(errorHandling);
  await app.register(securityHeaders, { corsOrigins: config.corsOrigins });
  await app.register(openApi);
  await app.register(authentication, { bearer: new SessionAuthenticator(verifier, store) });

  await app.register(healthRoutes, { prefix: '/api/anime', store });
  await app.register(identityRoutes, { prefix: '/api/auth', store, keys });
  const { queue, renderer } = production;
  const jobs = new ProductionService({ store, queue, events: production.events, signer: production.signer, audit: services.audit, renderer });
  const gallery = new GalleryService({ store, signer: production.signer, audit: services.audit, production: jobs });
  await app.register(productionRoutes, { prefix: '/api/anime', service: jobs, events: production.events });
  await app.register(assetRoutes, { prefix: '/api/anime', store, signer: production.signer, storage: production.assets });
  await app.register(galleryRoutes, { prefix: '/api/anime', service: gallery });
  if (options.extraRoutes) await options.extraRoutes(app, services);

  await app.ready();
  await production.start();
  return app;
}
