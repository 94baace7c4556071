import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeEachDialect } from '../support/dialects.js';
import { signIn, useTestApp } from '../support/app.js';
import { startServer, type RunningServer } from '../support/server.js';

/** Two real `celforge serve` processes on one store: the key cap holds across them, and no log line carries a secret. */
describeEachDialect('API keys across processes', (dialect) => {
  const t = useTestApp(dialect);
  let servers: RunningServer[] = [];

  beforeAll(async () => {
    const storage = { dataDir: t.config.dataDir, ...(t.config.databaseUrl && { databaseUrl: t.config.databaseUrl }) };
    servers = await Promise.all([0, 1].map(() => startServer(storage, { env: { CELFORGE_LOG_LEVEL: 'debug' } })));
  });
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.stop()));
  });

  it('30 concurrent creates on two instances: exactly 25 keys and 5 problem answers; keys and signing secrets never logged', async () => {
    const user = await signIn(t.app);
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        fetch(`${servers[i % 2]!.url}/api/auth/api-keys`, {
          method: 'POST',
          headers: { ...user.authorization, 'content-type': 'application/json' },
          body: JSON.stringify({ name: `burst ${i}`, scopes: ['jobs:read'] }),
        }).then(async (res) => ({ status: res.status, type: res.headers.get('content-type') ?? '', body: (await res.json()) as Record<string, string> })),
      ),
    );
    const created = answers.filter((res) => res.status === 201);
    const refused = answers.filter((res) => res.status !== 201);
    expect(created).toHaveLength(25);
    expect(refused).toHaveLength(5);
    for (const res of refused) {
      expect(res.status).toBe(409);
      expect(res.type).toContain('application/problem+json');
      expect(res.body.type).toBe('urn:celforge:problem:too-many-api-keys');
    }
    const rows = await t.app.services.store.db.selectFrom('api_keys').select('id').where('user_id', '=', user.userId).execute();
    expect(rows).toHaveLength(25);

    const logs = servers.map((server) => server.output()).join('\n');
    expect(logs).toContain('/api/auth/api-keys'); // the requests were logged ...
    for (const { body } of created) {
      expect(body.signing_secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(logs).not.toContain(body.key); // ... but never a key
      expect(logs).not.toContain(body.key!.slice(-43));
      expect(logs).not.toContain(body.signing_secret); // nor a signing secret
    }
  });
});
