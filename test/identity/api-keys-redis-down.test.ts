import { expect, it } from 'vitest';
import { signedHeaders } from '../../src/identity/client-signing.js';
import { describeEachDialect } from '../support/dialects.js';
import { signIn, useTestApp } from '../support/app.js';
import type { FastifyInstance } from 'fastify';
import type { Principal } from '../../src/access/principal.js';
import type { SignedIn } from '../support/users.js';
import { apiKeyHeader, testRoutes, type CreatedKey } from './api-keys-support.js';

// Session tokens fail closed while Redis (the revocation channel) is down, so keys are made and
// revoked through the service here; what is tested is the API-key path.
function principalOf(user: SignedIn): Principal {
  return { userId: user.userId, email: user.email, role: 'user', sessionId: user.sessionId, via: 'token', scopes: null };
}

async function createKey(app: FastifyInstance, user: SignedIn): Promise<CreatedKey> {
  return (await app.services.apiKeys.create(principalOf(user), { name: 'ci', scopes: ['jobs:read'] })) as CreatedKey;
}

// Nothing listens on port 1: Redis is "down" from the start.
describeEachDialect('API keys while Redis is unreachable', (dialect) => {
  const t = useTestApp(dialect, { redisUrl: 'redis://127.0.0.1:1', redisPrefix: 'celforge-test-down:' }, { extraRoutes: testRoutes });

  it('keys still authenticate from the store (the cache is not trusted), revoke is immediate, session tokens fail closed', async () => {
    const user = await signIn(t.app);
    const key = await createKey(t.app, user);
    expect((await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(key.key) })).statusCode).toBe(200);
    const session = await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: user.authorization });
    expect(session.statusCode).toBe(503);
    await t.app.services.apiKeys.revoke(principalOf(user), key.id);
    expect((await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(key.key) })).statusCode).toBe(401);
  });

  it('a signed critical request fails closed (503) when the replay guard cannot be asked', async () => {
    const user = await signIn(t.app);
    const key = await createKey(t.app, user);
    const body = '{}';
    const res = await t.app.inject({
      method: 'POST',
      url: '/test/critical/a',
      headers: {
        ...apiKeyHeader(key.key),
        'content-type': 'application/json',
        ...signedHeaders({ method: 'POST', url: `${t.config.publicUrl}/test/critical/a`, body, apiKey: key.key, signingSecret: key.signing_secret }),
      },
      payload: body,
    });
    expect(res.statusCode).toBe(503);
    expect(res.json().type).toBe('urn:celforge:problem:unavailable');
    expect(res.headers['retry-after']).toBe('1');
  });
});
