import type { FastifyRequest } from 'fastify';
import type { Principal } from '../access/principal.js';
import type { Store } from '../db/database.js';
import { unauthorized, type Authenticator } from '../http/auth.js';
import { findSessionState } from './store.js';
import { TokenError, type AccessClaims, type AccessTokenVerifier } from './tokens.js';

/**
 * Bearer tokens: a verified (cached) signature, then the session's live state, so a logout,
 * revocation, disabled user or changed role counts on the very next request.
 */
export class SessionAuthenticator implements Authenticator {
  constructor(
    private readonly verifier: AccessTokenVerifier,
    private readonly store: Store,
  ) {}

  async authenticate(token: string, _request: FastifyRequest): Promise<Principal> {
    let claims: AccessClaims;
    try {
      claims = await this.verifier.verify(token);
    } catch (error) {
      if (error instanceof TokenError) throw unauthorized('The access token is invalid or expired.');
      throw error;
    }
    await this.assertLive(claims);
    return { userId: claims.sub, email: claims.email, role: claims.role, sessionId: claims.sid, via: 'token', scopes: null };
  }

  private async assertLive(claims: AccessClaims): Promise<void> {
    const state = await findSessionState(this.store.db, claims.sid);
    const live =
      state !== undefined &&
      state.user_id === claims.sub &&
      state.revoked_at === null &&
      state.expires_at > new Date().toISOString() &&
      state.disabled === 0 &&
      state.role === claims.role;
    if (!live) throw unauthorized('The session has ended; sign in again.');
  }
}
