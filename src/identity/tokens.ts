import { randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, errors as joseErrors, jwtVerify, type JWTHeaderParameters } from 'jose';
import type { Role } from '../access/principal.js';
import type { SigningKeySet } from './keys.js';

export const TOKEN_ISSUER = 'urn:celforge:auth';
export const TOKEN_AUDIENCE = 'urn:celforge:api';
export const TOKEN_TYPE = 'at+jwt';

export interface AccessClaims {
  sub: string;
  email: string;
  role: Role;
  sid: string;
  jti: string;
  iat: number;
  exp: number;
}

/** Why a token was refused; the client only ever sees a generic invalid_token. */
export class TokenError extends Error {
  override name = 'TokenError';
}

/** The keys cannot be fetched (the auth service is unreachable): the caller answers 503, never accepts. */
export class KeysUnavailableError extends Error {
  override name = 'KeysUnavailableError';
}

/** Finds a verification key by kid among our own keys (local set, or the auth service's JWKS). */
export type KeyLookup = (kid: string) => Promise<KeyObject | undefined> | KeyObject | undefined;

export function localKeyLookup(keys: () => SigningKeySet): KeyLookup {
  return (kid) => {
    const set = keys();
    return [set.current, set.previous].find((k) => k?.kid === kid)?.publicKey;
  };
}

export async function issueAccessToken(
  keys: SigningKeySet,
  subject: { userId: string; email: string; role: Role; sessionId: string },
  ttlSeconds: number,
): Promise<{ token: string; claims: AccessClaims }> {
  const iat = Math.floor(Date.now() / 1000);
  const claims: AccessClaims = {
    sub: subject.userId,
    email: subject.email,
    role: subject.role,
    sid: subject.sessionId,
    jti: randomUUID(),
    iat,
    exp: iat + ttlSeconds,
  };
  const token = await new SignJWT({ email: claims.email, role: claims.role, sid: claims.sid })
    .setProtectedHeader({ alg: 'EdDSA', typ: TOKEN_TYPE, kid: keys.current.kid })
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setSubject(claims.sub)
    .setJti(claims.jti)
    .setIssuedAt(iat)
    .setExpirationTime(claims.exp)
    .sign(keys.current.privateKey);
  return { token, claims };
}

const FORBIDDEN_HEADERS = ['jku', 'jwk', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit'] as const;
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{10,2000}\.[A-Za-z0-9_-]{10,8000}\.[A-Za-z0-9_-]{20,200}$/;
const CACHE_LIMIT = 50_000;

/** The cache key of a token: the tail of its signature (short to hash; the whole token is compared on a hit). */
const cacheKey = (token: string) => token.slice(-32);

/**
 * Verifies access tokens: EdDSA only, typ at+jwt, our iss and aud, exp/nbf, a kid from our own key
 * set. A verified token is cached until it expires, so a repeat costs a map lookup; revocation is
 * checked by the caller on every request, never cached here.
 */
export class AccessTokenVerifier {
  private readonly cache = new Map<string, { token: string; claims: AccessClaims }>();

  /**
   * `maxLifetimeSeconds`: a token whose exp − iat exceeds it is refused, whoever signed it —
   * revocations are kept only that long, so a longer-lived token would outlive its revocation.
   */
  constructor(
    private readonly lookup: KeyLookup,
    private readonly maxLifetimeSeconds = Number.POSITIVE_INFINITY,
  ) {}

  async verify(token: string): Promise<AccessClaims> {
    const cached = this.cached(token);
    if (cached) return cached;
    if (!TOKEN_SHAPE.test(token)) throw new TokenError('malformed token');
    const claims = await this.verifySignature(token);
    this.remember(token, claims);
    return claims;
  }

  /** A token this process just signed: known good, so its first use needs no signature check. */
  remember(token: string, claims: AccessClaims): void {
    const now = Math.floor(Date.now() / 1000);
    if (this.cache.size >= CACHE_LIMIT) this.evictExpired(now);
    this.cache.set(cacheKey(token), { token, claims });
  }

  /** The claims of `token` when it was verified before and has not expired: no signature check needed. */
  cached(token: string): AccessClaims | undefined {
    const key = cacheKey(token);
    const entry = this.cache.get(key);
    if (!entry || entry.token !== token) return undefined;
    if (entry.claims.exp > Date.now() / 1000) return entry.claims;
    this.cache.delete(key);
    return undefined;
  }

  private async verifySignature(token: string): Promise<AccessClaims> {
    try {
      const { payload } = await jwtVerify(token, (header: JWTHeaderParameters) => this.keyFor(header), {
        algorithms: ['EdDSA'],
        issuer: TOKEN_ISSUER,
        audience: TOKEN_AUDIENCE,
        typ: TOKEN_TYPE,
        requiredClaims: ['sub', 'sid', 'jti', 'iat', 'exp'],
        clockTolerance: 5,
      });
      const { sub, email, role, sid, jti, iat, exp } = payload;
      if (typeof email !== 'string' || (role !== 'admin' && role !== 'user') || typeof sid !== 'string') {
        throw new TokenError('claims missing');
      }
      if (exp! - iat! > this.maxLifetimeSeconds) throw new TokenError('lifetime above the configured maximum');
      return { sub: sub!, email, role, sid, jti: jti!, iat: iat!, exp: exp! };
    } catch (error) {
      if (error instanceof TokenError || error instanceof KeysUnavailableError) throw error;
      if (error instanceof joseErrors.JOSEError) throw new TokenError(error.code);
      throw error;
    }
  }

  private async keyFor(header: JWTHeaderParameters): Promise<KeyObject> {
    if (FORBIDDEN_HEADERS.some((name) => name in header)) throw new TokenError('foreign key reference in header');
    if (typeof header.kid !== 'string') throw new TokenError('no kid');
    const key = await this.lookup(header.kid);
    if (!key) throw new TokenError('unknown kid');
    return key;
  }

  private evictExpired(now: number): void {
    for (const [key, { claims }] of this.cache) if (claims.exp <= now) this.cache.delete(key);
    // Still full of live tokens: drop the oldest entries (Map keeps insertion order).
    for (const key of this.cache.keys()) {
      if (this.cache.size < CACHE_LIMIT * 0.9) break;
      this.cache.delete(key);
    }
  }
}
