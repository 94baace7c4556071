/**
 * Identity: accounts, sessions, second factors (TOTP, passkeys), single sign-on and API keys; who a
 * credential belongs to. Owns the `users`, `sessions`, `refresh_tokens`, `recovery_codes`, `api_keys`,
 * `passkeys`, `webauthn_challenges`, `sso_links`, `sso_attempts` and `sso_sessions` tables; others ask
 * `app.identity` (its service, or `identity/store.ts` for a lookup by id).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Principal } from '../access/principal.js';
import type { Config } from '../config/config.js';
import { localSecret, randomKey } from '../config/local-secrets.js';
import { ApiKeyAuthenticator } from './api-keys/authenticator.js';
import { apiKeyRoutes } from './api-keys/routes.js';
import { ApiKeyService } from './api-keys/service.js';
import { SessionAuthenticator } from './authenticator.js';
import { browserSessionRoutes } from './browser-session.js';
import { createEncryptor, parseMasterKey, type Encryptor } from './encryption.js';
import { loadSigningKeys, type SigningKeySet } from './keys.js';
import { passkeyRoutes } from './passkeys/routes.js';
import { PasskeyService } from './passkeys/service.js';
import { hashPassword } from './passwords.js';
import { RevocationFeedFollower, remoteKeyLookup } from './remote.js';
import { RevocationView, localPublisher, redisPublisher, type RevocationPublisher } from './revocations.js';
import { identityRoutes, verifyRoute } from './routes.js';
import { IdentityService } from './service.js';
import { SsoProviders } from './sso/providers.js';
import { ssoRoutes } from './sso/routes.js';
import { SsoService } from './sso/service.js';
import { MemoryLoginThrottle, RedisLoginThrottle } from './throttle.js';
import { AccessTokenVerifier, localKeyLookup } from './tokens.js';

export interface IdentityServices {
  service: IdentityService;
  apiKeys: ApiKeyService;
  passkeys: PasskeyService;
  /** single sign-on with the configured OpenID providers */
  sso: SsoService;
  keys: () => SigningKeySet;
  verifier: AccessTokenVerifier;
  /** secrets at rest (TOTP secrets, API-key signing secrets); aad = the owning row's id */
  encryptor: Encryptor;
  /** what the bearer hot path checks after the signature: revoked sessions, changed users */
  revocations: RevocationView;
  /** access tokens → principals (signature, then revocations) */
  bearer: SessionAuthenticator;
  /** API keys → principals */
  apiKey: ApiKeyAuthenticator;
  /** an API node of a split deployment: tokens are checked against CELFORGE_AUTH_URL */
  remote: boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    identity: IdentityServices;
  }
}

export interface IdentityOptions {
  /** trust the auth service at CELFORGE_AUTH_URL (its keys and revocation feed) instead of our own */
  remote: boolean;
}

/** The master key for secrets at rest: configured (env, *_FILE, Vault), else made once in the data dir. */
function masterEncryptor(config: Config): Encryptor {
  const key = parseMasterKey(config.secrets.encryptionKey ?? localSecret(config.dataDir, 'encryption-key', randomKey));
  const id = `k${createHash('sha256').update(key).digest('base64url').slice(0, 10)}`;
  return createEncryptor({ current: { id, key } });
}

export const identity = fp(
  async (app: FastifyInstance, options: IdentityOptions) => {
    const { config, store, redis, bus, audit } = app;
    const { remote } = options;
    let signingKeys = loadSigningKeys({ dataDir: config.dataDir, signingKey: config.secrets.signingKey });
    const keys = () => signingKeys;
    // `celforge keys rotate` writes the key file; a running server takes the new key within a minute.
    const keyReload = config.secrets.signingKey
      ? undefined
      : setInterval(() => {
          try {
            signingKeys = loadSigningKeys({ dataDir: config.dataDir });
          } catch (error) {
            app.log.warn({ err: error }, 'signing keys: could not reload the key file; keeping the keys in use');
          }
        }, 60_000).unref();
    const verifier = new AccessTokenVerifier(remote ? remoteKeyLookup(config.authUrl!) : localKeyLookup(keys), config.accessTokenTtlSeconds);
    const encryptor = masterEncryptor(config);
    const revocations = new RevocationView(config.accessTokenTtlSeconds);

    // Late-bound: the identity service, made below, tells the key cache of user changes.
    const assertSteppedUp = (principal: Principal): Promise<void> => service.assertSteppedUp(principal);
    const apiKeys = new ApiKeyService({ store, encryptor, audit, bus, channel: `${config.redisPrefix}apikeys`, log: app.log, assertSteppedUp });

    const onError = (error: unknown) => app.log.warn({ err: error }, 'revocation view');
    let publisher: RevocationPublisher;
    let follower: RevocationFeedFollower | undefined;
    if (remote) {
      publisher = localPublisher(revocations);
      follower = new RevocationFeedFollower({ authUrl: config.authUrl!, serviceToken: config.secrets.serviceToken!, view: revocations, onError });
      follower.start();
      await follower.waitUntilReady(3_000);
    } else if (bus) {
      publisher = await redisPublisher({ view: revocations, bus, prefix: config.redisPrefix, store, onError });
    } else {
      publisher = localPublisher(revocations);
      await revocations.loadFrom(store);
      // Changes made by HTTP here apply at once; a resync picks up those of `celforge user …` in another process.
      revocations.resyncEvery(store, 5_000, onError);
    }
    const service: IdentityService = new IdentityService({
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
      signinFailed: (reason) => app.metrics.signinFailed(reason),
      // late-bound: the passkey service, made just below, finishes its sign-ins through this one
      passkeys: { has: (userId): Promise<boolean> => passkeys.has(userId), secondFactorOptions: (userId) => passkeys.secondFactorOptions(userId) },
    });
    const passkeys: PasskeyService = new PasskeyService({ store, audit, identity: service, publicUrl: config.publicUrl, apiKeys });
    const sso = new SsoService({ store, identity: service, providers: new SsoProviders(config.sso), revocations: publisher, audit, publicUrl: config.publicUrl });
    // User changes this instance learns of from elsewhere (the store resync after `celforge user …`,
    // the feed) reach the key cache too.
    revocations.subscribe((event) => {
      if (event.kind === 'user') apiKeys.forgetUser(event.userId);
    });

    app.decorate('identity', {
      service,
      apiKeys,
      passkeys,
      sso,
      keys,
      verifier,
      encryptor,
      revocations,
      bearer: new SessionAuthenticator(verifier, revocations),
      apiKey: new ApiKeyAuthenticator(apiKeys, audit),
      remote,
    });
    app.addHook('onClose', async () => {
      clearInterval(keyReload);
      follower?.close();
      await publisher.close();
      apiKeys.close();
    });
  },
  { name: 'identity', dependencies: ['store', 'audit', 'observability'] },
);

/** `/api/auth`: sign-in, sessions, second factors, passkeys, single sign-on, API keys, the studio's cookie session; on a remote API node only `/verify`. */
export async function identityApi(app: FastifyInstance) {
  const { config, store, identity } = app;
  if (identity.remote) {
    await app.register(verifyRoute, { prefix: '/api/auth', verifier: identity.verifier });
    return;
  }
  await app.register(identityRoutes, {
    prefix: '/api/auth',
    store,
    keys: identity.keys,
    identity: identity.service,
    verifier: identity.verifier,
    view: identity.revocations,
    serviceToken: config.secrets.serviceToken,
  });
  await app.register(apiKeyRoutes, { prefix: '/api/auth', keys: identity.apiKeys });
  await app.register(passkeyRoutes, { prefix: '/api/auth', passkeys: identity.passkeys });
  await app.register(browserSessionRoutes, { prefix: '/api/auth', identity: identity.service, store, publicUrl: config.publicUrl, passkeys: identity.passkeys });
  await app.register(ssoRoutes, { prefix: '/api/auth', sso: identity.sso, identity: identity.service, store, publicUrl: config.publicUrl });
}
