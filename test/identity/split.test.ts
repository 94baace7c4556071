import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';
import { startServer, type RunningServer } from '../support/server.js';
import { TEST_PASSWORD } from '../support/users.js';

const SERVICE_TOKEN = 'split-test-service-token-0123456789abcdef';
const ADMIN = 'split-admin@example.test';

describeEachDialect('split mode: auth service and API node as two processes', (dialect) => {
  let storage: TestStorage;
  let apiDir: string | undefined;
  let auth: RunningServer;
  let api: RunningServer;

  beforeAll(async () => {
    storage = await createTestStorage(dialect);
    auth = await startServer(storage, {
      args: ['serve', '--only', 'auth'],
      env: { CELFORGE_ADMIN_EMAIL: ADMIN, CELFORGE_ADMIN_PASSWORD: TEST_PASSWORD, CELFORGE_SERVICE_TOKEN: SERVICE_TOKEN },
    });
    // On PostgreSQL the API node has a data dir of its own: it cannot read the signing keys, only the JWKS.
    apiDir = dialect === 'postgres' ? mkdtempSync(path.join(tmpdir(), 'celforge-api-')) : undefined;
    api = await startServer(
      { dataDir: apiDir ?? storage.dataDir, databaseUrl: storage.databaseUrl },
      { args: ['serve', '--only', 'api'], env: { CELFORGE_AUTH_URL: auth.url, CELFORGE_SERVICE_TOKEN: SERVICE_TOKEN } },
    );
  });
  afterAll(async () => {
    await api?.stop();
    await auth?.stop();
    if (apiDir) rmSync(apiDir, { recursive: true, force: true });
    await storage?.drop();
  });

  const login = async () => {
    const response = await fetch(`${auth.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: ADMIN, password: TEST_PASSWORD }),
    });
    expect(response.status).toBe(200);
    return (await response.json()) as { access_token: string; refresh_token: string };
  };
  const verifyAtApi = (token: string) => fetch(`${api.url}/api/auth/verify`, { headers: { authorization: `Bearer ${token}` } });

  it('each process mounts only its part', async () => {
    expect((await fetch(`${api.url}/api/auth/login`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${api.url}/api/anime/health`)).status).toBe(200);
    expect((await fetch(`${auth.url}/api/anime/health`)).status).toBe(200);
    // the revocation feed is for holders of the service token only
    expect((await fetch(`${auth.url}/api/auth/revocations`)).status).toBe(404);
    expect((await fetch(`${auth.url}/api/auth/revocations`, { headers: { 'x-celforge-service-token': 'guess' } })).status).toBe(404);
  });

  it('a token from the auth service works at the API node until logout, then is refused', async () => {
    const pair = await login();
    const ok = await verifyAtApi(pair.access_token);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ valid: true, email: ADMIN, role: 'admin' });
    const out = await fetch(`${auth.url}/api/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${pair.access_token}` } });
    expect(out.status).toBe(204);
    // The auth service pushes the revocation on its feed before it answers the logout; the API node
    // applies it when the event arrives (milliseconds, another process): poll briefly, never sleep.
    await expect.poll(async () => (await verifyAtApi(pair.access_token)).status, { timeout: 3_000, interval: 10 }).toBe(401);
    expect((await verifyAtApi(pair.access_token)).status).toBe(401);
  });

  it('a forged token is refused at the API node', async () => {
    const pair = await login();
    const [header, payload] = pair.access_token.split('.');
    expect((await verifyAtApi(`${header}.${payload}.${'A'.repeat(86)}`)).status).toBe(401);
  });

  it('when the auth service is gone the API node answers 503, never accepts', async () => {
    const pair = await login();
    expect((await verifyAtApi(pair.access_token)).status).toBe(200);
    expect((await fetch(`${api.url}/api/anime/ready`)).status).toBe(200);
    await auth.stop('SIGKILL');
    // /ready (public) turns 503 as soon as the API node sees its feed die
    await expect.poll(async () => (await fetch(`${api.url}/api/anime/ready`)).status, { timeout: 5_000, interval: 20 }).toBe(503);
    for (let i = 0; i < 3; i++) {
      const response = await verifyAtApi(pair.access_token);
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({ type: 'urn:celforge:problem:auth-unavailable' });
    }
    // public routes still answer
    expect((await fetch(`${api.url}/api/anime/health`)).status).toBe(200);
  });
});

describeEachDialect('split mode: configuration', (dialect) => {
  it('an API node that trusts an auth service needs the service token; without an auth URL it is a full API node', async () => {
    const { buildApp } = await import('../../src/app.js');
    const { testConfig, ConfigError } = await import('../../src/config/config.js');
    const storage = await createTestStorage(dialect);
    try {
      const base = { dataDir: storage.dataDir, databaseUrl: storage.databaseUrl };
      await expect(buildApp(testConfig({ ...base, authUrl: 'http://127.0.0.1:9' }), { only: 'api' })).rejects.toBeInstanceOf(ConfigError);
      const local = await buildApp(testConfig(base), { only: 'api' });
      try {
        expect(local.hasRoute({ method: 'POST', url: '/api/auth/login' })).toBe(true);
        expect(local.hasRoute({ method: 'POST', url: '/api/anime/generate' })).toBe(true);
        expect(local.services.production.worker).toBeFalsy();
      } finally {
        await local.close();
      }
    } finally {
      await storage.drop();
    }
  });
});
