import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK, type JWTPayload } from 'jose';
import Provider, { type Configuration } from 'oidc-provider';

/** A person at the test provider, made by the test. */
export interface OidcTestUser {
  sub: string;
  email?: string;
  email_verified?: boolean;
  name?: string;
  groups?: string[];
}

export interface OidcTestClient {
  client_id: string;
  client_secret: string;
  redirect_uris: string[];
  post_logout_redirect_uris?: string[];
}

export interface OidcTestProvider {
  issuer: string;
  users: Map<string, OidcTestUser>;
  addUser(user: OidcTestUser): OidcTestUser;
  /** rewrites the claims of the next ID token the token endpoint answers with, re-signed with the provider's key */
  tamperNextIdToken(change: (claims: JWTPayload) => JWTPayload): void;
  /** a logout token signed with the provider's key (Back-Channel Logout 1.0 §2.4), with `override` applied */
  logoutToken(claims: { sub?: string; sid?: string; aud: string }, override?: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

const SIGN_IN_PAGE = (uid: string) => `<!doctype html>
<html lang="en"><head><title>Test provider sign-in</title></head>
<body><main><h1>Test provider</h1>
<form method="post" action="/interaction/${uid}">
<label for="login">Username</label> <input id="login" name="login" autocomplete="username" required>
<button type="submit">Continue</button>
</form></main></body></html>`;

function readForm(request: IncomingMessage): Promise<URLSearchParams> {
  return new Promise((resolve, reject) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => resolve(new URLSearchParams(body)));
    request.on('error', reject);
  });
}

/**
 * A real OpenID provider (`oidc-provider`) on a loopback port, with the users, clients and signing
 * key the test makes. Its sign-in page is one field (the username, no password) and consent is
 * granted at once, so a test can drive the code flow over HTTP or in a browser.
 */
export async function startOidcProvider(options: { clients: OidcTestClient[]; users?: OidcTestUser[] }): Promise<OidcTestProvider> {
  const users = new Map<string, OidcTestUser>((options.users ?? []).map((u) => [u.sub, u]));
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const signingJwk: JWK = { ...(await exportJWK(privateKey)), kid: `test-${randomUUID().slice(0, 8)}`, alg: 'RS256', use: 'sig' };
  const signingKey = await importJWK(signingJwk, 'RS256');
  let tamper: ((claims: JWTPayload) => JWTPayload) | undefined;

  let handle: (request: IncomingMessage, response: ServerResponse) => void = (_q, s) => s.end();
  const server = createServer((request, response) => handle(request, response));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const configuration: Configuration = {
    clients: options.clients.map((client) => ({
      ...client,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    jwks: { keys: [signingJwk] },
    cookies: { keys: [randomUUID()] },
    claims: { acr: null, sid: null, auth_time: null, openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    scopes: ['openid', 'email', 'profile', 'groups'],
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true }, backchannelLogout: { enabled: true } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(_ctx, id) {
      const user = users.get(id);
      if (!user) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: user.email, email_verified: user.email_verified, name: user.name, groups: user.groups };
        },
      };
    },
    // First-party test client: consent is granted at once.
    async loadExistingGrant(ctx) {
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client!.clientId, accountId: ctx.oidc.session!.accountId! });
      grant.addOIDCScope('openid email profile groups');
      await grant.save();
      return grant;
    },
  };
  const provider = new Provider(issuer, configuration);
  const callback = provider.callback();

  handle = (request, response) => {
    const url = new URL(request.url ?? '/', issuer);
    const interaction = /^\/interaction\/([\w-]+)$/.exec(url.pathname);
    if (interaction && request.method === 'GET') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(SIGN_IN_PAGE(interaction[1]!));
      return;
    }
    if (interaction && request.method === 'POST') {
      void (async () => {
        const login = (await readForm(request)).get('login') ?? '';
        const user = users.get(login);
        const result = user ? { login: { accountId: user.sub } } : { error: 'access_denied', error_description: 'unknown user' };
        await provider.interactionFinished(request, response, result, { mergeWithLastSubmission: false });
      })().catch((error: unknown) => response.writeHead(500).end(String(error)));
      return;
    }
    if (url.pathname === '/token' && tamper) {
      const change = tamper;
      tamper = undefined;
      rewriteIdToken(response, async (token) => {
        const claims = change(decodeJwt(token));
        return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid, typ: 'JWT' }).sign(signingKey);
      });
    }
    callback(request, response);
  };

  return {
    issuer,
    users,
    addUser(user) {
      users.set(user.sub, user);
      return user;
    },
    tamperNextIdToken(change) {
      tamper = change;
    },
    async logoutToken(claims, override = {}, header = {}) {
      const now = Math.floor(Date.now() / 1000);
      const payload: Record<string, unknown> = {
        iss: issuer,
        aud: claims.aud,
        iat: now,
        exp: now + 120,
        jti: randomUUID(),
        events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
        ...(claims.sub !== undefined && { sub: claims.sub }),
        ...(claims.sid !== undefined && { sid: claims.sid }),
        ...override,
      };
      for (const [name, value] of Object.entries(payload)) if (value === undefined) delete payload[name];
      return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid, typ: 'logout+jwt', ...header }).sign(signingKey);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Holds the token endpoint's JSON answer back, and sends it with its `id_token` replaced. */
function rewriteIdToken(response: ServerResponse, replace: (token: string) => Promise<string>) {
  const end = response.end.bind(response) as (chunk?: unknown) => ServerResponse;
  response.end = ((chunk?: unknown) => {
    const text = chunk === undefined ? '' : Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk);
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return end(chunk);
    }
    if (typeof body.id_token !== 'string') return end(chunk);
    void replace(body.id_token).then((token) => {
      const next = JSON.stringify({ ...body, id_token: token });
      if (!response.headersSent) response.setHeader('content-length', Buffer.byteLength(next));
      end(next);
    });
    return response;
  }) as ServerResponse['end'];
}
