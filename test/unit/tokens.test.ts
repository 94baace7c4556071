import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { SigningKeySet } from '../../src/identity/keys.js';
import { AccessTokenVerifier, issueAccessToken, localKeyLookup, TOKEN_AUDIENCE, TOKEN_ISSUER, TOKEN_TYPE, TokenError } from '../../src/identity/tokens.js';

const TTL = 900;
const T0 = Date.parse('2026-03-01T12:00:00Z');
const subject = { userId: 'u-1', email: 'ada@celforge.example', role: 'user' as const, sessionId: 's-1' };

function keyPair(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { kid, privateKey, publicKey };
}

const keys: SigningKeySet = { current: keyPair('k-current'), previous: keyPair('k-previous') };
const verifier = () => new AccessTokenVerifier(localKeyLookup(() => keys), TTL);

async function refusal(token: string, v = verifier()): Promise<string> {
  const error = await v.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TokenError);
  return (error as TokenError).message;
}

/** A token with our claims, signed however the test asks. */
function forged(options: { key: KeyObject | Uint8Array; alg: string; kid?: string; iat?: number; exp?: number; typ?: string }) {
  const iat = options.iat ?? Math.floor(Date.now() / 1000);
  return new SignJWT({ email: subject.email, role: subject.role, sid: subject.sessionId })
    .setProtectedHeader({ alg: options.alg, typ: options.typ ?? TOKEN_TYPE, kid: options.kid ?? keys.current.kid })
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setSubject(subject.userId)
    .setJti('j-1')
    .setIssuedAt(iat)
    .setExpirationTime(options.exp ?? iat + TTL)
    .sign(options.key);
}

afterEach(() => {
  vi.useRealTimers();
});

describe('access tokens', () => {
  it('verifies a token it issued, with the current or the previous key', async () => {
    const { token, claims } = await issueAccessToken(keys, subject, TTL);
    expect(claims.exp - claims.iat).toBe(TTL);
    expect(await verifier().verify(token)).toEqual(claims);
    const rotatedOut = await forged({ key: keys.previous!.privateKey, alg: 'EdDSA', kid: keys.previous!.kid });
    expect((await verifier().verify(rotatedOut)).sub).toBe(subject.userId);
  });

  it('refuses a token once it expired (5 s of clock tolerance), cached or not', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: T0 });
    const { token } = await issueAccessToken(keys, subject, TTL);
    const cachedOnce = verifier();
    await cachedOnce.verify(token);

    vi.setSystemTime(T0 + (TTL + 4) * 1000);
    expect((await verifier().verify(token)).sub).toBe(subject.userId);

    vi.setSystemTime(T0 + (TTL + 6) * 1000);
    expect(await refusal(token)).toBe('ERR_JWT_EXPIRED');
    expect(await refusal(token, cachedOnce)).toBe('ERR_JWT_EXPIRED');
  });

  it('refuses a lifetime (exp − iat) above the maximum, whoever signed it', async () => {
    const iat = Math.floor(Date.now() / 1000);
    const atLimit = await forged({ key: keys.current.privateKey, alg: 'EdDSA', iat, exp: iat + TTL });
    expect((await verifier().verify(atLimit)).exp).toBe(iat + TTL);
    const tooLong = await forged({ key: keys.current.privateKey, alg: 'EdDSA', iat, exp: iat + TTL + 1 });
    expect(await refusal(tooLong)).toBe('lifetime above the configured maximum');
    const { token } = await issueAccessToken(keys, subject, TTL + 60);
    expect(await refusal(token)).toBe('lifetime above the configured maximum');
  });

  it('refuses a token signed by a key that is not ours, under our kid or another', async () => {
    const stranger = keyPair('k-current');
    expect(await refusal(await forged({ key: stranger.privateKey, alg: 'EdDSA' }))).toBe('ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
    expect(await refusal(await forged({ key: stranger.privateKey, alg: 'EdDSA', kid: 'k-stranger' }))).toBe('unknown kid');
    // a previous key that was dropped no longer verifies
    const { token } = await issueAccessToken({ current: keys.previous! }, subject, TTL);
    const withoutPrevious = new AccessTokenVerifier(localKeyLookup(() => ({ current: keys.current })), TTL);
    expect(await refusal(token, withoutPrevious)).toBe('unknown kid');
  });

  it('refuses any algorithm but EdDSA, including HMAC keyed with our public key', async () => {
    const publicBytes = keys.current.publicKey.export({ format: 'der', type: 'spki' });
    expect(await refusal(await forged({ key: new Uint8Array(publicBytes), alg: 'HS256' }))).toBe('ERR_JOSE_ALG_NOT_ALLOWED');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(await refusal(await forged({ key: ec.privateKey, alg: 'ES256' }))).toBe('ERR_JOSE_ALG_NOT_ALLOWED');
    const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none', typ: TOKEN_TYPE, kid: keys.current.kid })).toString('base64url')}.${(await forged({ key: keys.current.privateKey, alg: 'EdDSA' })).split('.')[1]}.${'A'.repeat(43)}`;
    expect(await refusal(unsigned)).toBe('ERR_JOSE_ALG_NOT_ALLOWED');
  });

  it('refuses the wrong token type and a garbled token', async () => {
    expect(await refusal(await forged({ key: keys.current.privateKey, alg: 'EdDSA', typ: 'JWT' }))).toBe('ERR_JWT_CLAIM_VALIDATION_FAILED');
    const { token } = await issueAccessToken(keys, subject, TTL);
    expect(await refusal(`${token}x`)).toBe('ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
    expect(await refusal('not.a.token')).toBe('malformed token');
  });
});
