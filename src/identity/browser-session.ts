import { createHash } from 'node:crypto';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Principal } from '../access/principal.js';
import type { Store } from '../db/database.js';
import { HttpProblem } from '../http/problem.js';
import { AssertionBody } from './passkeys/credential.js';
import type { PasskeyService } from './passkeys/service.js';
import { context } from './routes.js';
import type { IdentityService, TokenPair } from './service.js';
import { findRefreshToken } from './store.js';

/** The httpOnly cookie that carries a browser session's refresh token. */
export const REFRESH_COOKIE = 'celforge_refresh';
/**
 * The header every cookie-authenticated request must carry. A cross-site form or image cannot set
 * a custom header, and a cross-site fetch that sets one needs a CORS preflight this service refuses.
 */
export const STUDIO_HEADER = 'x-celforge-studio';
const COOKIE_PATH = '/api/auth';

const Email = Type.String({ minLength: 3, maxLength: 254 });
const BrowserTokens = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer(),
  session_id: Type.String(),
});

export interface BrowserSessionOptions {
  identity: IdentityService;
  store: Store;
  /** the origin browsers address (CELFORGE_PUBLIC_URL); the only Origin these routes accept */
  publicUrl: string;
  /** passkey sign-in from the studio; absent: no such route */
  passkeys?: PasskeyService;
}

const forbidden = (detail: string) => new HttpProblem(403, 'forbidden', detail);

/**
 * `/api/auth/browser/*`: sign-in, refresh and sign-out for the studio. The access token goes to the
 * page (kept in memory there); the refresh token never does: it lives in an httpOnly,
 * SameSite=Strict cookie scoped to `/api/auth`. Every route checks the custom header and that
 * Origin is exactly the public URL, so no other site can make the browser use the cookie. The
 * body-based `/login` and `/refresh` stay as they are for API clients.
 */
export const browserSessionRoutes: FastifyPluginAsyncTypebox<BrowserSessionOptions> = async (app, options) => {
  const { identity } = options;
  const origin = new URL(options.publicUrl).origin;
  const secure = origin.startsWith('https:');
  const signin = { auth: 'public', rateClass: 'signin' } as const;

  const fromStudio = async (request: FastifyRequest) => {
    if (request.headers[STUDIO_HEADER] !== '1') throw forbidden(`Send the ${STUDIO_HEADER} header.`);
    if (request.headers.origin !== origin) throw forbidden('This request must come from the studio itself.');
  };

  const setRefreshCookie = (reply: FastifyReply, value: string, maxAge: number) =>
    reply.header('set-cookie', stringifySetCookie({ name: REFRESH_COOKIE, value, path: COOKIE_PATH, httpOnly: true, sameSite: 'strict', secure, maxAge }));

  const answer = (reply: FastifyReply, pair: TokenPair) => {
    // The session's idle limit bounds the cookie; the server still decides whether the token lives.
    setRefreshCookie(reply, pair.refresh_token, 7 * 86_400);
    return { access_token: pair.access_token, token_type: pair.token_type, expires_in: pair.expires_in, session_id: pair.session_id };
  };

  const cookieToken = (request: FastifyRequest): string | undefined => {
    const header = request.headers.cookie;
    return header ? parseCookie(header)[REFRESH_COOKIE] : undefined;
  };

  app.post(
    '/browser/login',
    {
      config: signin,
      onRequest: fromStudio,
      schema: {
        tags: ['identity'],
        summary: 'Sign in from the studio: the refresh token is set as an httpOnly cookie',
        body: Type.Object({ email: Email, password: Type.String({ minLength: 1, maxLength: 256 }), otp: Type.Optional(Type.String({ minLength: 6, maxLength: 64 })) }, { additionalProperties: false }),
        response: { 200: BrowserTokens },
      },
    },
    async (request, reply) => answer(reply, await identity.login(request.body, context(request))),
  );

  if (options.passkeys) {
    const passkeys = options.passkeys;
    app.post(
      '/browser/passkeys/signin',
      {
        config: signin,
        onRequest: fromStudio,
        schema: {
          tags: ['identity'],
          summary: 'Finish a passkey sign-in from the studio (passwordless or second factor): the refresh token is set as an httpOnly cookie',
          body: AssertionBody,
          response: { 200: BrowserTokens },
        },
      },
      async (request, reply) => answer(reply, await passkeys.signIn(request.body, context(request))),
    );
  }

  app.post(
    '/browser/refresh',
    {
      config: { auth: 'public', rateClass: 'refresh' },
      onRequest: fromStudio,
      schema: {
        tags: ['identity'],
        summary: "A new access token from the studio's refresh cookie; 204 when there is no cookie (nobody signed in here)",
        response: { 200: BrowserTokens, 204: Type.Null() },
      },
    },
    async (request, reply) => {
      const token = cookieToken(request);
      // No cookie is the ordinary state of a visitor, not a failed credential: the studio asks on every load.
      if (!token) return reply.code(204).send(null);
      try {
        return answer(reply, await identity.refresh(token, context(request)));
      } catch (error) {
        // A dead refresh token is useless to keep: the browser forgets it.
        if (error instanceof HttpProblem && error.status === 401) setRefreshCookie(reply, '', 0);
        throw error;
      }
    },
  );

  app.post(
    '/browser/logout',
    {
      config: { auth: 'public', rateClass: 'write' },
      onRequest: fromStudio,
      schema: { tags: ['identity'], summary: "Sign out the studio: ends the cookie's session and clears the cookie", response: { 204: Type.Null() } },
    },
    async (request, reply) => {
      const token = cookieToken(request);
      const row = token ? await findRefreshToken(options.store.db, createHash('sha256').update(token, 'utf8').digest('hex')) : undefined;
      if (row && row.revoked_at === null) {
        const principal: Principal = { userId: row.user_id, email: row.email, role: row.role, sessionId: row.session_id, via: 'token', scopes: null };
        await identity.logout(principal, context(request));
      }
      setRefreshCookie(reply, '', 0);
      return reply.code(204).send(null);
    },
  );
};
