import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Store } from '../db/database.js';
import { eventStreams } from '../http/event-stream.js';
import { paginate } from '../http/pagination.js';
import { contextOf } from '../http/request-context.js';
import { HttpProblem, notFound } from '../http/problem.js';
import { publicJwks, type SigningKeySet } from './keys.js';
import type { RevocationView } from './revocations.js';
import type { IdentityService, RequestContext } from './service.js';
import { findUserById, type SessionRow, type UserRow } from './store.js';
import type { AccessTokenVerifier } from './tokens.js';
import { principalOf } from '../access/authentication.js';

const RoleSchema = Type.Union([Type.Literal('admin'), Type.Literal('user')]);
const Email = Type.String({ minLength: 3, maxLength: 254 });
const Password = Type.String({ minLength: 1, maxLength: 256 });
const Code = Type.String({ minLength: 6, maxLength: 64 });
const Uuid = Type.String({ minLength: 36, maxLength: 36, pattern: '^[0-9a-f-]{36}$' });

const Me = Type.Object({
  id: Type.String(),
  email: Type.String(),
  role: RoleSchema,
  totp_enabled: Type.Boolean(),
  created_at: Type.String(),
});

const TokenPair = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer(),
  refresh_token: Type.String(),
  session_id: Type.String(),
});

const Session = Type.Object({
  id: Type.String(),
  created_at: Type.String(),
  last_seen_at: Type.String(),
  expires_at: Type.String(),
  mfa_at: Type.Union([Type.String(), Type.Null()]),
  user_agent: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean(),
});

const UserView = Type.Object({
  id: Type.String(),
  email: Type.String(),
  role: RoleSchema,
  disabled: Type.Boolean(),
  totp_enabled: Type.Boolean(),
  created_at: Type.String(),
  updated_at: Type.String(),
});

const Revoked = Type.Object({ revoked: Type.Integer() });

/** Where the request came from (what sessions and the audit trail record). */
export const context = contextOf;

const userView = (u: UserRow) => ({
  id: u.id,
  email: u.email,
  role: u.role,
  disabled: u.disabled === 1,
  totp_enabled: u.totp_enabled === 1,
  created_at: u.created_at,
  updated_at: u.updated_at,
});

const sessionView = (s: SessionRow, currentId: string | null) => ({
  id: s.id,
  created_at: s.created_at,
  last_seen_at: s.last_seen_at,
  expires_at: s.expires_at,
  mfa_at: s.mfa_at,
  user_agent: s.user_agent,
  ip: s.ip,
  current: s.id === currentId,
});

export interface IdentityRouteOptions {
  store: Store;
  keys: () => SigningKeySet;
  identity: IdentityService;
  verifier: AccessTokenVerifier;
  view: RevocationView;
  /** shared secret of the services that may follow the revocation feed; unset = no feed */
  serviceToken?: string;
}

/** `/api/auth`: HTTP and schemas only; the rules live in IdentityService. */
export const identityRoutes: FastifyPluginAsyncTypebox<IdentityRouteOptions> = async (app, options) => {
  const { identity } = options;
  const signin = { auth: 'public', rateClass: 'signin' } as const;

  app.post(
    '/login',
    {
      config: signin,
      schema: {
        tags: ['identity'],
        body: Type.Object({ email: Email, password: Password, otp: Type.Optional(Code) }, { additionalProperties: false }),
        response: { 200: TokenPair },
      },
    },
    async (request) => identity.login(request.body, context(request)),
  );

  app.post(
    '/refresh',
    {
      config: { auth: 'public', rateClass: 'refresh' },
      schema: {
        tags: ['identity'],
        body: Type.Object({ refresh_token: Type.String({ minLength: 1, maxLength: 128 }) }, { additionalProperties: false }),
        response: { 200: TokenPair },
      },
    },
    async (request) => identity.refresh(request.body.refresh_token, context(request)),
  );

  app.post('/logout', { config: { rateClass: 'write' }, schema: { tags: ['identity'], response: { 204: Type.Null() } } }, async (request, reply) => {
    await identity.logout(principalOf(request), context(request));
    return reply.code(204).send(null);
  });

  app.get('/me', { config: { rateClass: 'read' }, schema: { tags: ['identity'], response: { 200: Me } } }, async (request) => {
    const user = await findUserById(options.store.db, principalOf(request).userId);
    if (!user) throw notFound();
    return { id: user.id, email: user.email, role: user.role, totp_enabled: user.totp_enabled === 1, created_at: user.created_at };
  });

  app.post(
    '/password',
    {
      config: { rateClass: 'write' },
      schema: {
        tags: ['identity'],
        body: Type.Object({ current_password: Password, new_password: Password }, { additionalProperties: false }),
        response: { 204: Type.Null() },
      },
    },
    async (request, reply) => {
      await identity.changePassword(principalOf(request), request.body, context(request));
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/sessions',
    { config: { rateClass: 'read' }, schema: { tags: ['identity'], response: { 200: Type.Object({ items: Type.Array(Session) }) } } },
    async (request) => {
      const principal = principalOf(request);
      const sessions = await identity.listSessions(principal.userId);
      return { items: sessions.map((s) => sessionView(s, principal.sessionId)) };
    },
  );

  app.delete(
    '/sessions/:id',
    {
      config: { rateClass: 'write', critical: true },
      schema: { tags: ['identity'], params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }), response: { 204: Type.Null() } },
    },
    async (request, reply) => {
      await identity.revokeOwnSession(principalOf(request), request.params.id, context(request));
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/sessions',
    { config: { rateClass: 'write', critical: true }, schema: { tags: ['identity'], response: { 200: Revoked } } },
    async (request) => ({ revoked: await identity.revokeOtherSessions(principalOf(request), context(request)) }),
  );

  app.post(
    '/totp/setup',
    {
      config: { rateClass: 'write' },
      schema: {
        tags: ['identity'],
        response: { 200: Type.Object({ secret: Type.String(), otpauth_uri: Type.String(), qr_svg: Type.String() }) },
      },
    },
    async (request) => identity.totpSetup(principalOf(request), context(request)),
  );

  const CodeBody = Type.Object({ code: Code }, { additionalProperties: false });

  app.post(
    '/totp/enable',
    {
      config: { rateClass: 'write' },
      schema: {
        tags: ['identity'],
        body: Type.Object({ code: Code, password: Password }, { additionalProperties: false }),
        response: { 200: Type.Object({ recovery_codes: Type.Array(Type.String()) }) },
      },
    },
    async (request) => ({ recovery_codes: await identity.totpEnable(principalOf(request), request.body, context(request)) }),
  );

  app.post(
    '/totp/disable',
    { config: { rateClass: 'write', critical: true }, schema: { tags: ['identity'], body: CodeBody, response: { 204: Type.Null() } } },
    async (request, reply) => {
      await identity.totpDisable(principalOf(request), request.body.code, context(request));
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/totp',
    {
      config: { rateClass: 'read' },
      schema: { tags: ['identity'], response: { 200: Type.Object({ enabled: Type.Boolean(), recovery_codes_left: Type.Integer() }) } },
    },
    async (request) => identity.totpStatus(principalOf(request).userId),
  );

  app.post(
    '/totp/recovery-codes',
    {
      config: { rateClass: 'write', critical: true },
      schema: { tags: ['identity'], body: CodeBody, response: { 200: Type.Object({ recovery_codes: Type.Array(Type.String()) }) } },
    },
    async (request) => ({
      recovery_codes: await identity.regenerateRecoveryCodes(principalOf(request), request.body.code, context(request)),
    }),
  );

  app.post(
    '/step-up',
    {
      config: { rateClass: 'signin' },
      schema: { tags: ['identity'], body: CodeBody, response: { 200: Type.Object({ mfa_at: Type.String(), valid_until: Type.String() }) } },
    },
    async (request) => identity.stepUp(principalOf(request), request.body.code, context(request)),
  );

  await app.register(verifyRoute, { verifier: options.verifier });

  app.get('/jwks.json', { config: { auth: 'public' }, schema: { tags: ['identity'] } }, async (_request, reply) => {
    reply.header('cache-control', 'public, max-age=300');
    return publicJwks(options.keys());
  });

  revocationFeed(app, options);
  await app.register(adminRoutes, { identity });
};

/**
 * `GET /verify`: token facts for other services. Mounted on the auth service and on API nodes of a
 * split deployment (which verify locally against the auth service's keys and revocation feed).
 */
export async function verifyRoute(app: FastifyInstance, options: { verifier: AccessTokenVerifier }) {
  app.get(
    '/verify',
    {
      config: { rateClass: 'read' },
      schema: {
        tags: ['identity'],
        response: {
          200: Type.Object({ valid: Type.Boolean(), sub: Type.String(), email: Type.String(), role: RoleSchema, sid: Type.String(), exp: Type.Integer() }),
        },
      },
    },
    async (request) => {
      const token = request.headers.authorization!.split(' ')[1]!;
      // Already verified (and cached) by the authentication hook: this is a map lookup.
      const claims = await options.verifier.verify(token);
      return { valid: true, sub: claims.sub, email: claims.email, role: claims.role, sid: claims.sid, exp: claims.exp };
    },
  );

}

const HEARTBEAT_MS = 5_000;

/**
 * Server-sent events for API nodes of a split deployment: a snapshot of the revocations still
 * relevant, then every change as it happens, and a heartbeat so the follower can tell a live feed
 * from a dead one. Only for callers holding the shared service token.
 */
function revocationFeed(app: FastifyInstance, options: IdentityRouteOptions) {
  const expected = options.serviceToken ? createHash('sha256').update(options.serviceToken).digest() : undefined;
  const openEventStream = eventStreams(app);
  app.get('/revocations', { config: { auth: 'public' }, schema: { hide: true } }, async (request, reply) => {
    const presented = request.headers['x-celforge-service-token'];
    const digest = typeof presented === 'string' ? createHash('sha256').update(presented).digest() : Buffer.alloc(32);
    if (!expected || !timingSafeEqual(digest, expected)) throw notFound();
    if (!options.view.isReady()) throw new HttpProblem(503, 'auth-unavailable', 'Revocations are not available right now.');
    let unsubscribe = () => {};
    const stream = openEventStream(request, reply, {
      heartbeatMs: HEARTBEAT_MS,
      onHeartbeat: (feed) => (options.view.isReady() ? feed.send('ping', Date.now()) : feed.destroy()),
      onClose: () => unsubscribe(),
    });
    stream.send('snapshot', options.view.snapshot());
    unsubscribe = options.view.subscribe((event) => stream.send('revocation', event));
  });
}

const adminRoutes: FastifyPluginAsyncTypebox<{ identity: IdentityService }> = async (app, options) => {
  const { identity } = options;
  const admin = { role: 'admin', critical: true, rateClass: 'admin', scope: 'admin' } as const;

  app.get(
    '/users',
    {
      config: admin,
      schema: {
        tags: ['admin'],
        querystring: Type.Object(
          {
            after: Type.Optional(Email),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
            q: Type.Optional(Type.String({ minLength: 1, maxLength: 254, description: 'part of the e-mail' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(UserView), next: Type.Union([Type.String(), Type.Null()]) }) },
      },
    },
    async (request) => {
      const query = request.query;
      const limit = query.limit ?? 50;
      const users = await identity.listUsers({ after: query.after, limit: limit + 1, search: query.q });
      const { page, next } = paginate(users, limit, (last) => last.email);
      return { items: page.map(userView), next };
    },
  );

  app.post(
    '/users',
    {
      config: admin,
      schema: {
        tags: ['admin'],
        description: 'Without `password`, a random one is made and answered once as `initial_password`.',
        body: Type.Object({ email: Email, password: Type.Optional(Password), role: RoleSchema }, { additionalProperties: false }),
        response: { 201: Type.Intersect([UserView, Type.Object({ initial_password: Type.Optional(Type.String()) })]) },
      },
    },
    async (request, reply) => {
      const { user, generatedPassword } = await identity.adminCreateUser(request.body, { id: principalOf(request).userId, ctx: context(request) });
      return reply.code(201).send({ ...userView(user), ...(generatedPassword && { initial_password: generatedPassword }) });
    },
  );

  app.patch(
    '/users/:id',
    {
      config: admin,
      schema: {
        tags: ['admin'],
        params: Type.Object({ id: Uuid }),
        body: Type.Object({ role: Type.Optional(RoleSchema), disabled: Type.Optional(Type.Boolean()) }, { additionalProperties: false, minProperties: 1 }),
        response: { 200: UserView },
      },
    },
    async (request) => {
      const user = await identity.updateUser(request.params.id, request.body, {
        id: principalOf(request).userId,
        ctx: context(request),
      });
      return userView(user);
    },
  );

  app.delete(
    '/users/:id/totp',
    { config: admin, schema: { tags: ['admin'], params: Type.Object({ id: Uuid }), response: { 204: Type.Null() } } },
    async (request, reply) => {
      await identity.adminResetTotp(request.params.id, { id: principalOf(request).userId, ctx: context(request) });
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/users/:id/sessions',
    { config: admin, schema: { tags: ['admin'], params: Type.Object({ id: Uuid }), response: { 200: Type.Object({ items: Type.Array(Session) }) } } },
    async (request) => ({
      items: (await identity.adminListSessions(request.params.id)).map((s) => sessionView(s, principalOf(request).sessionId ?? null)),
    }),
  );

  app.delete(
    '/users/:id/sessions/:sid',
    { config: admin, schema: { tags: ['admin'], params: Type.Object({ id: Uuid, sid: Uuid }), response: { 204: Type.Null() } } },
    async (request, reply) => {
      const { id, sid } = request.params;
      await identity.adminRevokeSession(id, sid, { id: principalOf(request).userId, ctx: context(request) });
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/users/:id/sessions',
    { config: admin, schema: { tags: ['admin'], params: Type.Object({ id: Uuid }), response: { 200: Revoked } } },
    async (request) => ({
      revoked: await identity.adminRevokeSessions(request.params.id, { id: principalOf(request).userId, ctx: context(request) }),
    }),
  );
};

