import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, type JWTHeaderParameters } from 'jose';
import { expect, it } from 'vitest';
import { useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { signIn, type SignedIn } from '../support/users.js';

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describeEachDialect('identity: forged and invalid access tokens', (dialect) => {
  const t = useTestApp(dialect);
  let user: SignedIn;
  const me = (token: string) => t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `Bearer ${token}` } });

  const claims = (overrides: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return {
      iss: 'urn:celforge:auth',
      aud: 'urn:celforge:api',
      sub: user.userId,
      email: user.email,
      role: 'admin',
      sid: user.sessionId,
      jti: randomUUID(),
      iat: now,
      exp: now + 600,
      ...overrides,
    };
  };
  const ours = () => t.app.services.keys().current;
  const sign = (payload: Record<string, unknown>, header: Partial<JWTHeaderParameters> = {}, key = ours().privateKey) =>
    new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: ours().kid, ...header } as JWTHeaderParameters).sign(key);

  async function expectRefused(token: string) {
    const response = await me(token);
    expect(response.statusCode).toBe(401);
    expect(response.headers['www-authenticate']).toMatch(/^Bearer realm="celforge"/);
    expect(response.json()).toMatchObject({ type: 'urn:celforge:problem:unauthorized', status: 401 });
    expect(response.body).not.toMatch(/stack|jose|ERR_|signature verification/i);
  }

  it('accepts the genuine token (the control case)', async () => {
    user = await signIn(t.app);
    expect((await me(user.token)).statusCode).toBe(200);
    expect((await me(await sign(claims({ role: 'user' })))).statusCode).toBe(200);
  });

  it('refuses alg "none"', async () => {
    const header = b64({ alg: 'none', typ: 'at+jwt', kid: ours().kid });
    const body = b64(claims());
    await expectRefused(`${header}.${body}.`);
    await expectRefused(`${header}.${body}.${'A'.repeat(86)}`);
  });

  it('refuses HS256 signed with the public key as the secret', async () => {
    const publicKey = ours().publicKey;
    const secrets = [
      Buffer.from(publicKey.export({ format: 'pem', type: 'spki' })),
      publicKey.export({ format: 'der', type: 'spki' }),
      Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url'),
    ];
    for (const secret of secrets) {
      const token = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: ours().kid }).sign(secret);
      await expectRefused(token);
    }
  });

  it('refuses a token signed by an attacker key that claims our kid', async () => {
    const attacker = generateKeyPairSync('ed25519');
    await expectRefused(await sign(claims(), {}, attacker.privateKey));
  });

  it('refuses jku, jwk, x5u, x5c and crit headers, even when our key signed', async () => {
    const attacker = generateKeyPairSync('ed25519');
    const attackerJwk = await exportJWK(attacker.publicKey);
    await expectRefused(await sign(claims(), { jwk: attackerJwk } as Partial<JWTHeaderParameters>, attacker.privateKey));
    await expectRefused(await sign(claims(), { jku: 'https://attacker.example/jwks.json' }, attacker.privateKey));
    await expectRefused(await sign(claims(), { jku: 'https://attacker.example/jwks.json' }));
    await expectRefused(await sign(claims(), { x5u: 'https://attacker.example/cert.pem' } as Partial<JWTHeaderParameters>));
    await expectRefused(await sign(claims(), { x5c: ['MIIB'] }));
    await expectRefused(await sign(claims(), { jwk: await exportJWK(ours().publicKey) } as Partial<JWTHeaderParameters>));
  });

  it('refuses a tampered payload, also while the genuine token with the same signature is cached', async () => {
    expect((await me(user.token)).statusCode).toBe(200); // cached now, keyed by its signature's tail
    const [header, payload, signature] = user.token.split('.');
    const decoded = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
    await expectRefused(`${header}.${b64({ ...decoded, role: 'admin' })}.${signature}`);
    await expectRefused(`${header}.${b64({ ...decoded, exp: decoded.exp as number + 86_400 })}.${signature}`);
    expect((await me(user.token)).statusCode).toBe(200);
  });

  it('refuses expired, not-yet-valid, wrong-iss, wrong-aud and wrong-typ tokens', async () => {
    const now = Math.floor(Date.now() / 1000);
    await expectRefused(await sign(claims({ role: 'user', iat: now - 1000, exp: now - 60 })));
    await expectRefused(await sign(claims({ role: 'user', nbf: now + 600 })));
    await expectRefused(await sign(claims({ role: 'user', iss: 'https://evil.example' })));
    await expectRefused(await sign(claims({ role: 'user', aud: 'urn:someone:else' })));
    await expectRefused(await sign(claims({ role: 'user' }), { typ: 'JWT' }));
    await expectRefused(await sign(claims({ role: 'user' }), { typ: undefined }));
    await expectRefused(await sign(claims({ role: 'user' }), { kid: 'no-such-kid' }));
    await expectRefused(await sign(claims({ role: 'superuser' })));
  });

  it('refuses a token, even one signed with our key, that lives longer than the configured TTL (it would outlive its revocation)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const ttl = t.config.accessTokenTtlSeconds;
    expect((await me(await sign(claims({ role: 'user', iat: now, exp: now + ttl }))))).toMatchObject({ statusCode: 200 });
    await expectRefused(await sign(claims({ role: 'user', iat: now, exp: now + ttl + 60 })));
    await expectRefused(await sign(claims({ role: 'user', iat: now - 86_400, exp: now + 600 })));
  });

  it('refuses a token whose role claim is no longer the user\'s role', async () => {
    // an "admin" token minted before the user was (re)set to "user" is dead from that moment
    await t.app.services.identity.updateUser(user.userId, { role: 'user' }, { id: 'someone-else' });
    await expectRefused(await sign(claims({ role: 'admin' })));
  });

  it('refuses malformed Authorization headers with WWW-Authenticate', async () => {
    for (const authorization of [`Bearer Bearer ${user.token}`, `Bearer  ${user.token}`, `Bearer`, `Basic ${user.token}`, `${user.token}`]) {
      const response = await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization } });
      expect(response.statusCode).toBe(401);
      expect(response.headers['www-authenticate']).toBeDefined();
    }
    const lower = await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `bEaReR ${user.token}` } });
    expect(lower.statusCode).toBe(200);
  });

  it('publishes the current and previous keys in the JWKS, never a private part', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/api/auth/jwks.json' });
    const keys = response.json().keys as Record<string, unknown>[];
    expect(keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519', kid: ours().kid, alg: 'EdDSA', use: 'sig' });
    expect(keys.some((k) => 'd' in k)).toBe(false);
  });

  it('GET /verify answers other services with the token facts', async () => {
    const fresh = await signIn(t.app);
    const response = await t.app.inject({ method: 'GET', url: '/api/auth/verify', headers: fresh.authorization });
    expect(response.json()).toMatchObject({ valid: true, sub: fresh.userId, email: fresh.email, role: 'user', sid: fresh.sessionId });
    expect(typeof response.json().exp).toBe('number');
    expect((await t.app.inject({ method: 'GET', url: '/api/auth/verify', headers: { authorization: 'Bearer abc.def.ghi' } })).statusCode).toBe(401);
  });
});
