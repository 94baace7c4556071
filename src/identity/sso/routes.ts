import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Store } from '../../db/database.js';
import { principalOf } from '../../access/authentication.js';
import { HttpProblem } from '../../http/problem.js';
import { REFRESH_COOKIE, STUDIO_HEADER } from '../browser-session.js';
import { context } from '../routes.js';
import type { IdentityService } from '../service.js';
import { SESSION_IDLE_SECONDS } from '../service.js';
import { findRefreshToken } from '../store.js';
import { createHash } from 'node:crypto';
import { ATTEMPT_SECONDS, type SsoService } from './service.js';

/** The httpOnly cookie binding an attempt to the browser that started it. */
export const ATTEMPT_COOKIE = 'celforge_sso';
const ATTEMPT_PATH = '/api/auth/sso';

const ProviderParams = Type.Object({ provider: Type.String({ minLength: 1, maxLength: 32, pattern: '^[a-z][a-z0-9]*$' }) });
const Link = Type.Object({
  id: Type.String(),
  provider: Type.String(),
  provider_name: Type.String(),
  email: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String(),
  last_used_at: Type.Union([Type.String(), Type.Null()]),
});

export interface SsoRouteOptions {
  sso: SsoService;
  identity: IdentityService;
  store: Store;
  publicUrl: string;
}

/**
 * `/api/auth/sso/*`: sign-in with an OpenID provider (a top-level navigation to `start`, back to
 * `callback`), links of the signed-in account, the provider's back-channel logout, and sign-out
 * that also ends the provider's session.
 */
export const ssoRoutes: FastifyPluginAsyncTypebox<SsoRouteOptions> = async (app, options) => {
  const { sso, identity } = options;
  const origin = new URL(options.publicUrl).origin;
  const secure = origin.startsWith('https:');
  const signin = { auth: 'public', rateClass: 'signin' } as const;

  // Providers post logout tokens as a form (Back-Channel Logout §2.5).
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16_384 }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body.toString())));
  });

  // SameSite=Lax: the provider sends the browser back with a cross-site top-level navigation.
  const attemptCookie = (value: string, maxAge: number) =>
    stringifySetCookie({ name: ATTEMPT_COOKIE, value, path: ATTEMPT_PATH, httpOnly: true, sameSite: 'lax', secure, maxAge });
  const refreshCookie = (value: string, maxAge: number) =>
    stringifySetCookie({ name: REFRESH_COOKIE, value, path: '/api/auth', httpOnly: true, sameSite: 'strict', secure, maxAge });
  const cookies = (request: FastifyRequest) => (request.headers.cookie ? parseCookie(request.headers.cookie) : {});
  const wantsPage = (request: FastifyRequest) => (request.headers.accept ?? '').includes('text/html');

  app.get('/sso/providers', { config: { auth: 'public', rateClass: 'read' }, schema: { tags: ['identity'], summary: 'The single sign-on providers the sign-in page offers', response: { 200: Type.Object({ items: Type.Array(Type.Object({ id: Type.String(), name: Type.String() })) }) } } }, async () => ({
    items: sso.publicList(),
  }));

  app.get(
    '/sso/:provider/start',
    { config: signin, schema: { tags: ['identity'], summary: 'Sign in with a provider: redirects the browser to it', params: ProviderParams } },
    async (request, reply) => {
      const started = await sso.start(request.params.provider, 'signin', context(request));
      return reply.header('set-cookie', attemptCookie(started.binding, ATTEMPT_SECONDS)).header('cache-control', 'no-store').redirect(started.url, 303);
    },
  );

  app.get(
    '/sso/:provider/callback',
    { config: signin, schema: { tags: ['identity'], summary: "The provider's answer: signs the browser in (refresh cookie) or links the account, then back to the studio", params: ProviderParams } },
    async (request, reply) => {
      const provider = request.params.provider;
      const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
      const clearAttempt = attemptCookie('', 0);
      reply.header('cache-control', 'no-store');
      try {
        const done = await sso.complete(provider, query, cookies(request)[ATTEMPT_COOKIE], context(request));
        if (done.kind === 'linked') return reply.header('set-cookie', clearAttempt).redirect(`/account?linked=${encodeURIComponent(done.provider)}`, 303);
        return reply.header('set-cookie', [clearAttempt, refreshCookie(done.pair.refresh_token, SESSION_IDLE_SECONDS)]).redirect('/', 303);
      } catch (error) {
        reply.header('set-cookie', clearAttempt);
        // A person in a browser lands on the sign-in page with the reason; other callers get the problem.
        if (error instanceof HttpProblem && wantsPage(request)) {
          const page = (await sso.purposeOf(query)) === 'link' ? '/account' : '/signin';
          return reply.redirect(`${page}?sso_error=${encodeURIComponent(error.slug)}`, 303);
        }
        throw error;
      }
    },
  );

  app.post(
    '/sso/:provider/link',
    {
      config: { rateClass: 'write' },
      schema: { tags: ['identity'], summary: 'Link a provider to the signed-in account: the studio then navigates to `url`', params: ProviderParams, response: { 200: Type.Object({ url: Type.String() }) } },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      if (!principal.sessionId) throw new HttpProblem(400, 'no-session', 'Link a provider from a signed-in session.');
      const started = await sso.start(request.params.provider, 'link', context(request), principal);
      reply.header('set-cookie', attemptCookie(started.binding, ATTEMPT_SECONDS)).header('cache-control', 'no-store');
      return { url: started.url };
    },
  );

  app.get('/sso/links', { config: { rateClass: 'read' }, schema: { tags: ['identity'], summary: "The providers linked to the caller's account", response: { 200: Type.Object({ items: Type.Array(Link) }) } } }, async (request) => ({
    items: await sso.listLinks(principalOf(request).userId),
  }));

  app.delete(
    '/sso/links/:id',
    {
      config: { rateClass: 'write', critical: true },
      schema: { tags: ['identity'], summary: 'Unlink a provider', params: Type.Object({ id: Type.String({ minLength: 36, maxLength: 36, pattern: '^[0-9a-f-]{36}$' }) }), response: { 204: Type.Null() } },
    },
    async (request, reply) => {
      await sso.unlink(principalOf(request), request.params.id, context(request));
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/sso/logout',
    {
      config: { auth: 'public', rateClass: 'write' },
      onRequest: async (request) => {
        if (request.headers[STUDIO_HEADER] !== '1') throw new HttpProblem(403, 'forbidden', `Send the ${STUDIO_HEADER} header.`);
        if (request.headers.origin !== origin) throw new HttpProblem(403, 'forbidden', 'This request must come from the studio itself.');
      },
      schema: {
        tags: ['identity'],
        summary: "Sign out the studio like /browser/logout; for a single sign-on session also the provider's logout address (RP-initiated logout)",
        response: { 200: Type.Object({ logout_url: Type.Union([Type.String(), Type.Null()]) }) },
      },
    },
    async (request, reply) => {
      const token = cookies(request)[REFRESH_COOKIE];
      const row = token ? await findRefreshToken(options.store.db, createHash('sha256').update(token, 'utf8').digest('hex')) : undefined;
      let logoutUrl: string | null = null;
      if (row && row.revoked_at === null) {
        logoutUrl = await sso.logoutUrl(row.session_id).catch(() => null);
        await identity.logout({ userId: row.user_id, email: row.email, role: row.role, sessionId: row.session_id, via: 'token', scopes: null }, context(request));
        if (logoutUrl) sso.recordRpLogout(row.user_id, row.session_id, context(request));
      }
      reply.header('set-cookie', refreshCookie('', 0)).header('cache-control', 'no-store');
      return { logout_url: logoutUrl };
    },
  );

  app.post(
    '/sso/:provider/backchannel-logout',
    {
      config: { auth: 'public', rateClass: 'signin' },
      schema: {
        tags: ['identity'],
        summary: 'OpenID Connect Back-Channel Logout: the provider ends the Celforge sessions of a provider session',
        params: ProviderParams,
        body: Type.Object({ logout_token: Type.String({ minLength: 1, maxLength: 8192 }) }),
        response: { 200: Type.Null() },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      await sso.backchannelLogout(request.params.provider, request.body.logout_token, context(request));
      return reply.code(200).send(null);
    },
  );
};
