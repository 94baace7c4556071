import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { insertSession, insertUser } from '../../src/identity/store.js';
import { issueAccessToken, type Role } from '../../src/identity/tokens.js';

export interface SignedIn {
  userId: string;
  email: string;
  sessionId: string;
  token: string;
  authorization: { authorization: string };
}

/** A user with a live session and an access token, made directly in the store. */
export async function signIn(app: FastifyInstance, options: { role?: Role; email?: string } = {}): Promise<SignedIn> {
  const { store, keys, config } = app.services;
  const now = new Date();
  const userId = randomUUID();
  const email = options.email ?? `user-${userId.slice(0, 8)}@example.test`;
  const role = options.role ?? 'user';
  await insertUser(store.db, {
    id: userId,
    email,
    password_hash: 'not-a-password-hash',
    role,
    disabled: 0,
    totp_secret: null,
    totp_enabled: 0,
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
    mfa_at: null,
    user_agent: null,
    ip: null,
  });
  const { token } = await issueAccessToken(keys(), { userId, email, role, sessionId }, config.accessTokenTtlSeconds);
  return { userId, email, sessionId, token, authorization: { authorization: `Bearer ${token}` } };
}
