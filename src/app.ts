import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import { access } from './access/plugin.js';
import { assets, assetsApi } from './assets/plugin.js';
import { audit, auditApi } from './audit/plugin.js';
import { ConfigError, type Config } from './config/config.js';
import type { Store } from './db/database.js';
import { storePlugin } from './db/plugin.js';
import { gallery, galleryApi } from './gallery/plugin.js';
import { loggerOptions, RequestLogController } from './http/logging.js';
import { http } from './http/plugin.js';
import { clientErrorHandler, frameworkErrors, type RefusedRequest } from './http/refusals.js';
import { requestId } from './http/request-id.js';
import { studio, studioPlugin } from './http/studio.js';
import { identity, identityApi } from './identity/plugin.js';
import { housekeepingFor } from './lifecycle/housekeeping.js';
import { lifecycle, lifecycleApi } from './lifecycle/plugin.js';
import { limits, limitsApi } from './limits/plugin.js';
import { observability, observabilityApi } from './observability/plugin.js';
import { production, productionApi } from './production/plugin.js';
import type { Renderer } from './renderers/renderer.js';
import { servicesOf, type Services } from './services.js';
import { sharing, sharingApi } from './sharing/plugin.js';

export type { Services } from './services.js';

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

function server(config: Config) {
  const app = Fastify({
    logger: loggerOptions(config.logLevel),
    logController: new RequestLogController(config.logLevel),
    genReqId: requestId,
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    // A request that reaches a closing server on a connection it still holds is served (with
    // `Connection: close`): the store closes only after the last connection, and Fastify's own 503
    // for it would be neither needed nor problem+json. New connections are refused by then.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    routerOptions: { maxParamLength: 200 },
    frameworkErrors: frameworkErrors(() => recordRefusal),
    clientErrorHandler: clientErrorHandler(() => recordRefusal),
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  // requests refused before routing are audited too, once the audit plugin is in
  const recordRefusal = (event: RefusedRequest): void => {
    if (app.hasDecorator('audit')) app.audit.record(event);
  };
  return app;
}

/**
 * Builds the whole service from a config: the server, the tests and the benchmark all start here.
 * Each capability is a plugin that builds its services and decorates the app with them (Fastify
 * checks the `dependencies` each declares); the request pipeline's hooks come in with them, so the
 * routes are mounted last.
 */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  // An API node of a split deployment trusts the auth service's keys and revocation feed. Without
  // CELFORGE_AUTH_URL, `--only api` is a full API node that leaves rendering to `celforge worker`s.
  const remote = config.authUrl !== undefined && options.only !== 'auth';
  if (remote && !config.secrets.serviceToken) {
    throw new ConfigError("CELFORGE_AUTH_URL needs CELFORGE_SERVICE_TOKEN, the token of the auth service's revocation feed");
  }
  const apiNode = options.only !== 'auth';
  // The studio is served wherever the API is (not by a split auth service).
  const site = apiNode ? studio(options.studioRoot) : undefined;
  const app = server(config);

  // capabilities, each after those it depends on
  await app.register(storePlugin, { config, store: options.store });
  await app.register(observability);
  await app.register(audit);
  await app.register(http, { fallback: site?.fallback });
  await app.register(identity, { remote });
  await app.register(access);
  await app.register(limits);
  await app.register(assets);
  await app.register(production, { worker: options.worker !== false && options.only === undefined, renderer: options.renderer, housekeeping: housekeepingFor });
  await app.register(lifecycle);
  await app.register(gallery);
  await app.register(sharing);
  app.decorate('services', servicesOf(app));

  // routes
  await app.register(observabilityApi, { authOnly: !apiNode });
  await app.register(identityApi);
  if (apiNode) {
    await app.register(productionApi);
    await app.register(assetsApi);
    await app.register(galleryApi);
    await app.register(lifecycleApi);
    await app.register(sharingApi);
    await app.register(auditApi);
    await app.register(limitsApi);
    if (options.extraRoutes) await options.extraRoutes(app, app.services);
    await app.register(studioPlugin, { site: site! });
  }

  await app.ready();
  return app;
}
