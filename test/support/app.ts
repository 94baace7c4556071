import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll } from 'vitest';
import { buildApp, type BuildOptions } from '../../src/app.js';
import { testConfig, type Config } from '../../src/config/config.js';
import { testSharedSecrets } from './cli.js';
import { createTestStorage, type DialectName } from './dialects.js';

export interface TestApp {
  app: FastifyInstance;
  config: Config;
}

/** Builds the app on fresh storage of the dialect before the suite, and tears it down after. */
export function useTestApp(
  dialect: DialectName,
  overrides: Partial<Config> = {},
  options: BuildOptions = {},
): TestApp {
  const handle = {} as TestApp;
  let drop: () => Promise<void> = async () => {};
  beforeAll(async () => {
    const storage = await createTestStorage(dialect);
    drop = storage.drop;
    // On PostgreSQL, processes started by the tests get the shared scale-out secrets; this app uses the same.
    const shared = storage.databaseUrl ? testSharedSecrets() : undefined;
    const secrets = {
      signingKey: shared?.CELFORGE_SIGNING_KEY,
      encryptionKey: shared?.CELFORGE_ENCRYPTION_KEY,
      urlSigningKey: shared?.CELFORGE_URL_SIGNING_KEY,
      ...overrides.secrets,
    };
    handle.config = testConfig({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl, ...overrides, secrets });
    handle.app = await buildApp(handle.config, options);
  });
  afterAll(async () => {
    await handle.app?.close();
    await drop();
  });
  return handle;
}

export { signIn, type SignedIn } from './users.js';
