import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { describe, expect, it } from 'vitest';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { expectProblem } from '../support/problem.js';

/** A route with a body schema, mounted only in this test, to exercise the shared conventions. */
async function echoRoutes(app: FastifyInstance) {
  app.post(
    '/api/anime/_test/echo',
    {
      config: { auth: 'public' },
      schema: {
        body: Type.Object({ prompt: Type.String({ minLength: 1, maxLength: 500 }), steps: Type.Optional(Type.Integer({ minimum: 1 })) }, { additionalProperties: false }),
      },
    },
    async (request) => request.body,
  );
  app.get('/api/anime/_test/boom', { config: { auth: 'public' } }, async () => {
    throw new Error('connect ECONNREFUSED 10.1.2.3:5432 at /srv/celforge/src/db.ts:12 select * from users');
  });
}

describeEachDialect('HTTP conventions', (dialect) => {
  const t = useTestApp(dialect, { corsOrigins: ['https://studio.example'], bodyLimit: 4096 }, { extraRoutes: echoRoutes });
  const post = (payload: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
    t.app.inject({ method: 'POST', url: '/api/anime/_test/echo', payload, headers });

  it('health says only up, ready checks the store', async () => {
    const health = await t.app.inject('/api/anime/health');
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({ status: 'up' });
    const ready = await t.app.inject('/api/anime/ready');
    expect(ready.json()).toEqual({ status: 'ready' });
  });

  it('a valid body passes through byte for byte', async () => {
    const prompt = "rain drops; an updated look -- it's ' UNION SELECT * FROM users --";
    const response = await post(JSON.stringify({ prompt, steps: 3 }));
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ prompt, steps: 3 });
  });

  it('unknown routes are 404 problems', async () => {
    const response = await t.app.inject('/api/anime/does-not-exist');
    expectProblem(response, 404, 'not-found');
  });

  it('a known path with the wrong method is 405 with Allow', async () => {
    const response = await t.app.inject({ method: 'DELETE', url: '/api/anime/health' });
    expectProblem(response, 405, 'method-not-allowed');
    expect(response.headers.allow).toContain('GET');
  });

  it('malformed JSON is a 400 problem', async () => {
    expectProblem(await post('{"prompt": "unterminated'), 400, 'malformed-json');
    expectProblem(await post(''), 400, 'malformed-json');
    expectProblem(await post('{"__proto__": {"admin": true}, "prompt": "x"}'), 400, 'malformed-json');
  });

  it('unknown fields are rejected with a pointer to them', async () => {
    const body = expectProblem(await post(JSON.stringify({ prompt: 'ok', role: 'admin' })), 400, 'validation');
    expect(body.errors).toEqual(expect.arrayContaining([expect.objectContaining({ in: 'body', pointer: '/role' })]));
  });

  it('wrong types and missing fields are rejected, not coerced', async () => {
    const wrongType = expectProblem(await post(JSON.stringify({ prompt: 'ok', steps: '3' })), 400, 'validation');
    expect(wrongType.errors).toEqual(expect.arrayContaining([expect.objectContaining({ pointer: '/steps' })]));
    expectProblem(await post(JSON.stringify({ prompt: 42 })), 400, 'validation');
    expectProblem(await post(JSON.stringify({})), 400, 'validation');
    expectProblem(await post(JSON.stringify(['prompt'])), 400, 'validation');
    expectProblem(await post(JSON.stringify({ prompt: 'x'.repeat(501) })), 400, 'validation');
  });

  it('bodies over the limit are 413', async () => {
    expectProblem(await post(JSON.stringify({ prompt: 'x'.repeat(5000) })), 413, 'body-too-large');
  });

  it('bodies that are not JSON are 415', async () => {
    expectProblem(await post('prompt=x', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'unsupported-media-type');
  });

  it('an internal failure is a 500 that names only the request id', async () => {
    const response = await t.app.inject({ url: '/api/anime/_test/boom', headers: { 'x-request-id': 'trace-abc-123' } });
    const body = expectProblem(response, 500, 'internal');
    expect(body.detail).toContain('trace-abc-123');
    expect(response.headers['x-request-id']).toBe('trace-abc-123');
  });

  it('a hostile X-Request-Id is replaced, not echoed', async () => {
    const response = await t.app.inject({ url: '/api/anime/health', headers: { 'x-request-id': 'evil\r\nSet-Cookie: a=b' } });
    expect(response.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('every answer carries the security headers and no-store', async () => {
    for (const url of ['/api/anime/health', '/api/anime/nope']) {
      const response = await t.app.inject(url);
      expect(response.headers['x-content-type-options']).toBe('nosniff');
      expect(response.headers['content-security-policy']).toContain("default-src 'none'");
      expect(response.headers['x-frame-options']).toBeDefined();
      expect(response.headers['referrer-policy']).toBe('no-referrer');
      expect(response.headers['cache-control']).toBe('no-store');
      expect(response.headers['x-powered-by']).toBeUndefined();
    }
  });

  it('CORS answers only the listed origin', async () => {
    const preflight = (origin: string) =>
      t.app.inject({
        method: 'OPTIONS',
        url: '/api/anime/health',
        headers: { origin, 'access-control-request-method': 'GET' },
      });
    const listed = await preflight('https://studio.example');
    expect(listed.headers['access-control-allow-origin']).toBe('https://studio.example');
    const other = await preflight('https://evil.example');
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    const lookalike = await preflight('https://studio.example.evil.example');
    expect(lookalike.headers['access-control-allow-origin']).toBeUndefined();
    const simple = await t.app.inject({ url: '/api/anime/health', headers: { origin: 'null' } });
    expect(simple.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('routes need a credential unless public; malformed Authorization is a 401 with WWW-Authenticate', async () => {
    const none = await t.app.inject('/api/auth/me');
    expectProblem(none, 401, 'unauthorized');
    expect(none.headers['www-authenticate']).toMatch(/^Bearer realm="celforge"/);
    const user = await signIn(t.app);
    for (const authorization of [`Bearer Bearer ${user.token}`, `Bearer  ${user.token}`, `Basic ${user.token}`, 'Bearer', `${user.token}`]) {
      const response = await t.app.inject({ url: '/api/auth/me', headers: { authorization } });
      expectProblem(response, 401, 'unauthorized');
      expect(response.headers['www-authenticate']).toBeDefined();
    }
    const ok = await t.app.inject({ url: '/api/auth/me', headers: { authorization: `bEaReR ${user.token}` } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toMatchObject({ id: user.userId, email: user.email, role: 'user' });
  });

  it('publishes OpenAPI 3.1 from the route schemas and serves Swagger UI', async () => {
    const response = await t.app.inject('/api/anime/openapi.json');
    expect(response.statusCode).toBe(200);
    const document = response.json() as { openapi: string; paths: Record<string, unknown> };
    expect(document.openapi).toBe('3.1.0');
    expect(document.paths).toHaveProperty('/api/anime/health');
    expect(document.paths).toHaveProperty('/api/auth/me');
    const docs = await t.app.inject('/api/anime/docs/');
    expect(docs.statusCode).toBe(200);
    expect(docs.headers['content-type']).toMatch(/text\/html/);
    // the page runs its own scripts and styles: it carries Swagger UI's policy, not the API's 'none'
    expect(docs.headers['content-security-policy']).toMatch(/script-src 'self'/);
    expect(docs.headers['x-content-type-options']).toBe('nosniff');
  });
});

describe('CORS when no origin is configured', () => {
  const t = useTestApp('sqlite');
  it('there is none: a preflight is a 405 problem, no answer carries Access-Control headers or Vary: Origin', async () => {
    const preflight = await t.app.inject({
      method: 'OPTIONS',
      url: '/api/anime/health',
      headers: { origin: 'https://studio.example', 'access-control-request-method': 'GET' },
    });
    expectProblem(preflight, 405, 'method-not-allowed');
    const simple = await t.app.inject({ url: '/api/anime/health', headers: { origin: 'https://studio.example' } });
    expect(simple.statusCode).toBe(200);
    for (const response of [preflight, simple]) {
      expect(Object.keys(response.headers).filter((name) => name.startsWith('access-control-'))).toEqual([]);
      expect(response.headers.vary).toBeUndefined();
    }
  });
});

describe('binding', () => {
  it('binds to 127.0.0.1 by default', async () => {
    const { loadConfig } = await import('../../src/config/config.js');
    expect(loadConfig({}).host).toBe('127.0.0.1');
  });
});
