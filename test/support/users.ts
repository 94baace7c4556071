import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { insertSession, insertUser } from '../../src/identity/store.js';
import type { Role } from '../../src/access/principal.js';
import { issueAccessToken } from '../../src/identity/tokens.js';

export interface SignedIn {
  userId: string;
  email: string;
  sessionId: string;
  token: string;
  authorization: { authorization: string };
}

/**
 * A user with a live session and an access token, made directly in the store. An admin is by
 * default enrolled in 2FA and stepped up in this session, as admin routes require; pass
 * `steppedUp: false` for one who is not.
 */
export async function signIn(
  app: FastifyInstance,
  options: { role?: Role; email?: string; steppedUp?: boolean } = {},
): Promise<SignedIn> {
  const { store, keys, config } = app.services;
  const now = new Date();
  const userId = randomUUID();
  const email = options.email ?? `user-${userId.slice(0, 8)}@example.test`;
  const role = options.role ?? 'user';
  const steppedUp = options.steppedUp ?? role === 'admin';
  await insertUser(store.db, {
    id: userId,
    email,
    password_hash: 'not-a-password-hash',
    role,
    disabled: 0,
    totp_secret: null,
    totp_enabled: steppedUp ? 1 : 0,
    totp_last_step: null,
    created_at: now.toISOString(),
    updated_at: now.toISOString(),
  });
  const sessionId = randomUUID();
  await insertSession(store.db, {
    id: sessionId,
    user_id: userId,
    created_at: now.toISOString(),
    last_seen_at: now.toISOString(),
    expires_at: new Date(now.getTime() + 86_400_000).toISOString(),
    revoked_at: null,
    revoked_reason: null,
    mfa_at: steppedUp ? now.toISOString() : null,
    user_agent: null,
    ip: null,
  });
  const { token } = await issueAccessToken(keys(), { userId, email, role, sessionId }, config.accessTokenTtlSeconds);
  return { userId, email, sessionId, token, authorization: { authorization: `Bearer ${token}` } };
}

export const TEST_PASSWORD = 'correct horse battery staple 42';

/** A user made through the identity service (argon2id password), signed in through POST /api/auth/login. */
export async function registerAndLogin(
  app: FastifyInstance,
  options: { role?: Role; email?: string; password?: string; remoteAddress?: string } = {},
): Promise<SignedIn & { refreshToken: string; password: string }> {
  const password = options.password ?? TEST_PASSWORD;
  const email = options.email ?? `u-${randomUUID().slice(0, 8)}@example.test`;
  const user = await app.services.identity.createUser({ email, password, role: options.role ?? 'user' });
  const response = await app.inject({
    method: 'POST',
    url: '/api/auth/login',
    payload: { email, password },
    remoteAddress: options.remoteAddress ?? `10.1.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`,
  });
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`);
  const body = response.json() as { access_token: string; refresh_token: string; session_id: string };
  return {
    userId: user.id,
    email: user.email,
    sessionId: body.session_id,
    token: body.access_token,
    refreshToken: body.refresh_token,
    password,
    authorization: { authorization: `Bearer ${body.access_token}` },
  };
}
