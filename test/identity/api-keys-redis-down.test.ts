import { expect, it } from 'vitest';
import { signedHeaders } from '../../src/identity/client-signing.js';
import { describeEachDialect } from '../support/dialects.js';
import { signIn, useTestApp } from '../support/app.js';
import { apiKeyHeader, createKey, testRoutes } from './api-keys-support.js';

// Nothing listens on port 1: Redis is "down" from the start.
describeEachDialect('API keys while Redis is unreachable', (dialect) => {
  const t = useTestApp(dialect, { redisUrl: 'redis://127.0.0.1:1', redisPrefix: 'celforge-test-down:' }, { extraRoutes: testRoutes });

  it('keys still authenticate from the store (the cache is not trusted) and revoke is immediate', async () => {
    const user = await signIn(t.app);
    const key = await createKey(t.app, user);
    expect((await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(key.key) })).statusCode).toBe(200);
    const del = await t.app.inject({ method: 'DELETE', url: `/api/auth/api-keys/${key.id}`, headers: user.authorization });
    expect(del.statusCode).toBe(204);
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
