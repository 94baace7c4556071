import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { testConfig } from '../../src/config/config.js';
import { runCli, testSharedSecrets } from '../support/cli.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';
import { startServer } from '../support/server.js';
import { TEST_PASSWORD } from '../support/users.js';

describeEachDialect('celforge user and token commands', (dialect) => {
  let storage: TestStorage;
  beforeAll(async () => {
    storage = await createTestStorage(dialect);
  });
  afterAll(async () => storage?.drop());

  it('adds, lists, changes and disables users; mints tokens', async () => {
    const weak = await runCli(['user', 'add', '--email', 'ops@example.test', '--role', 'admin'], storage, { stdin: 'password1234\n' });
    expect(weak.code).toBe(1);
    expect(weak.stderr).toMatch(/common/);

    const added = await runCli(['user', 'add', '--email', 'Ops@Example.test', '--role', 'admin'], storage, { stdin: `${TEST_PASSWORD}\n` });
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/^added ops@example\.test \(admin\)/);
    expect(added.stdout + added.stderr).not.toContain(TEST_PASSWORD);

    const user = await runCli(['user', 'add', '--email', 'artist@example.test'], storage, { stdin: `${TEST_PASSWORD}\n` });
    expect(user.code).toBe(0);
    const role = await runCli(['user', 'role', '--email', 'artist@example.test', '--role', 'admin'], storage);
    expect(role.stdout).toContain('artist@example.test: admin, active');

    const list = await runCli(['user', 'list'], storage);
    expect(list.stdout.split('\n').filter(Boolean).map((l) => l.split('\t').slice(0, 3))).toEqual([
      ['artist@example.test', 'admin', 'active'],
      ['ops@example.test', 'admin', 'active'],
    ]);

    const minted = await runCli(['token', '--email', 'ops@example.test', '--ttl', '5m'], storage);
    expect(minted.code).toBe(0);
    const token = minted.stdout.trim();
    expect((await runCli(['token', '--email', 'ops@example.test', '--ttl', '2h'], storage)).code).toBe(2);

    // On PostgreSQL the processes use the shared test secrets; this app must verify with the same key.
    const shared = storage.databaseUrl ? testSharedSecrets() : undefined;
    const app = await buildApp(
      testConfig({
        dataDir: storage.dataDir,
        databaseUrl: storage.databaseUrl,
        secrets: { signingKey: shared?.CELFORGE_SIGNING_KEY, encryptionKey: shared?.CELFORGE_ENCRYPTION_KEY },
      }),
    );
    try {
      const me = await app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `Bearer ${token}` } });
      expect(me.json()).toMatchObject({ email: 'ops@example.test', role: 'admin' });
      const disabled = await runCli(['user', 'disable', '--email', 'ops@example.test'], storage);
      expect(disabled.stdout).toContain('disabled');
      // the running app learns the change made by another process at its next resync (≤ 5 s)
      await expect
        .poll(async () => (await app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `Bearer ${token}` } })).statusCode, {
          timeout: 8_000,
          interval: 250,
        })
        .toBe(401);
    } finally {
      await app.close();
    }
  }, 180_000);
});

it('the first start creates an admin and prints its random password once', async () => {
  const storage = await createTestStorage('sqlite');
  try {
    const server = await startServer(storage);
    try {
      await expect.poll(() => /created with password (\S+)/.test(server.output()), { timeout: 5_000 }).toBe(true);
      const password = /created with password (\S+)/.exec(server.output())![1]!;
      const email = /admin (\S+) created/.exec(server.output())![1]!;
      const login = await fetch(`${server.url}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email, password }),
      });
      expect(login.status).toBe(200);
    } finally {
      await server.stop();
    }
    const again = await startServer(storage);
    try {
      expect(again.output()).not.toContain('created with password');
    } finally {
      await again.stop();
    }
  } finally {
    await storage.drop();
  }
}, 120_000);

it('several servers starting at once on an empty store make one admin, and all of them serve', async () => {
  const storage = await createTestStorage('sqlite');
  try {
    const servers = await Promise.all([startServer(storage), startServer(storage), startServer(storage)]);
    try {
      for (const server of servers) expect((await fetch(`${server.url}/api/anime/health`)).status).toBe(200);
      const printed = servers.filter((server) => server.output().includes('created with password'));
      expect(printed).toHaveLength(1);
      const list = await runCli(['user', 'list'], storage);
      expect(list.stdout.trim().split('\n')).toHaveLength(1);
      expect(list.stdout).toContain('\tadmin\t');
    } finally {
      await Promise.all(servers.map((server) => server.stop()));
    }
  } finally {
    await storage.drop();
  }
}, 180_000);
