import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { DEFAULT_LIMITS, testConfig } from '../../src/config/config.js';
import { testSharedSecrets } from '../support/cli.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';
import { signIn } from '../support/users.js';

/**
 * Simultaneous submissions by one user must not slip past the active-jobs quota: on PostgreSQL
 * across two instances (separate pools), on SQLite within the one embedded instance.
 */
describeEachDialect('active-jobs quota under concurrency', (dialect) => {
  let storage: TestStorage;
  const apps: FastifyInstance[] = [];

  beforeAll(async () => {
    storage = await createTestStorage(dialect);
    const shared = storage.databaseUrl ? testSharedSecrets() : undefined;
    const config = testConfig({
      dataDir: storage.dataDir,
      databaseUrl: storage.databaseUrl,
      limits: { ...DEFAULT_LIMITS, activeJobs: 3, jobsPerDay: 1000 },
      secrets: { signingKey: shared?.CELFORGE_SIGNING_KEY, encryptionKey: shared?.CELFORGE_ENCRYPTION_KEY, urlSigningKey: shared?.CELFORGE_URL_SIGNING_KEY },
    });
    apps.push(await buildApp(config, { worker: false }));
    if (dialect === 'postgres') apps.push(await buildApp(config, { worker: false }));
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    await storage?.drop();
  });

  it('12 simultaneous submissions split over the instances: exactly 3 accepted, the rest a quota problem', async () => {
    for (let round = 0; round < 3; round++) {
      const user = await signIn(apps[0]!);
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          apps[i % apps.length]!.inject({ method: 'POST', url: '/api/anime/generate', headers: user.authorization, payload: { prompt: `fox ${i}`, type: 'image' } }),
        ),
      );
      const codes = results.map((r) => r.statusCode).sort();
      expect(codes.filter((c) => c === 202), JSON.stringify(codes)).toHaveLength(3);
      for (const refused of results.filter((r) => r.statusCode !== 202)) {
        expect(refused.json()).toMatchObject({ status: 429, type: 'urn:celforge:problem:quota-active-jobs' });
      }
      const rows = await apps[0]!.services.store.db.selectFrom('jobs').select('id').where('user_id', '=', user.userId).where('status', '=', 'queued').execute();
      expect(rows).toHaveLength(3);
    }
  });
});
