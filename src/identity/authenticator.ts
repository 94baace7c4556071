import type { FastifyRequest } from 'fastify';
import type { Principal } from '../access/principal.js';
import { unauthorized, type Authenticator } from '../access/authentication.js';
import { HttpProblem } from '../http/problem.js';
import type { RevocationView } from './revocations.js';
import { KeysUnavailableError, TokenError, type AccessClaims, type AccessTokenVerifier } from './tokens.js';

export const authUnavailable = () =>
  new HttpProblem(503, 'auth-unavailable', 'Sign-in cannot be checked right now; retry shortly.', { headers: { 'retry-after': '5' } });

function principalOf(claims: AccessClaims): Principal {
  return { userId: claims.sub, email: claims.email, role: claims.role, sessionId: claims.sid, via: 'token', scopes: null };
}

/**
 * Bearer tokens: a verified (cached) signature, then the revocation view — in memory, no database
 * round trip — so a logout, revocation, disabled user or changed role counts on the very next
 * request. When the view cannot be trusted (its source is down) the answer is 503, never "accept".
 */
export class SessionAuthenticator implements Authenticator {
  constructor(
    private readonly verifier: AccessTokenVerifier,
    private readonly view: RevocationView,
  ) {}

  async authenticate(token: string, _request: FastifyRequest): Promise<Principal> {
    let claims: AccessClaims;
    try {
      claims = await this.verifier.verify(token);
    } catch (error) {
      if (error instanceof KeysUnavailableError) throw authUnavailable();
      if (error instanceof TokenError) throw unauthorized('The access token is invalid or expired.');
      throw error;
    }
    const verdict = this.view.check(claims);
    if (verdict === 'unavailable') throw authUnavailable();
    if (verdict === 'revoked') throw unauthorized('The session has ended; sign in again.');
    return principalOf(claims);
  }

  known(token: string): Principal | null {
    const claims = this.verifier.cached(token);
    return claims && this.view.check(claims) === 'live' ? principalOf(claims) : null;
  }
}
