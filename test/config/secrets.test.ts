import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/config.js';
import { resolveConfig } from '../../src/config/secrets.js';
import { startVaultDouble, type VaultDouble } from '../doubles/vault.js';
import { runCli } from '../support/cli.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';
import { startServer } from '../support/server.js';

const ROLE_ID = 'celforge-api';
const SECRET_ID = `sid-${randomBytes(12).toString('hex')}`;

function newKeys() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const x = publicKey.export({ format: 'jwk' }).x!;
  return {
    signing_key: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    /** the kid Celforge derives for a configured key */
    kid: `env-${x.slice(0, 11)}`,
    encryption_key: randomBytes(32).toString('base64'),
    url_signing_key: randomBytes(32).toString('base64'),
  };
}

function appRoleEnv(vault: VaultDouble): Record<string, string> {
  return { CELFORGE_VAULT_ADDR: vault.addr, CELFORGE_VAULT_ROLE_ID: ROLE_ID, CELFORGE_VAULT_SECRET_ID: SECRET_ID };
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const vaults: VaultDouble[] = [];
afterEach(async () => {
  for (const vault of vaults.splice(0)) await vault.close();
});
async function vaultWith(entry: Record<string, unknown>, options: { tokens?: string[] } = {}): Promise<VaultDouble> {
  const vault = await startVaultDouble({ secrets: { celforge: entry }, roles: { [ROLE_ID]: SECRET_ID }, ...options });
  vaults.push(vault);
  return vault;
}

describe('resolveConfig', () => {
  let storage: TestStorage;
  beforeAll(async () => {
    storage = await createTestStorage('sqlite');
  });
  afterAll(async () => storage.drop());

  it('fills what env and *_FILE did not give from Vault; the environment wins', async () => {
    const keys = newKeys();
    const vault = await vaultWith({
      database_url: 'postgres://vault-db.internal/celforge',
      REDIS_URL: 'redis://vault-cache.internal:6379',
      ...keys,
      metrics_token: 'metrics-from-vault',
    }, { tokens: ['hvs.test-token'] });
    const envKey = randomBytes(32).toString('base64');
    const resolved = await resolveConfig({
      CELFORGE_DATA_DIR: storage.dataDir,
      CELFORGE_VAULT_ADDR: vault.addr,
      CELFORGE_VAULT_TOKEN: 'hvs.test-token',
      CELFORGE_ENCRYPTION_KEY: envKey,
    }, { requireSecrets: true });
    resolved.close();
    expect(resolved.config.databaseUrl).toBe('postgres://vault-db.internal/celforge');
    expect(resolved.config.redisUrl).toBe('redis://vault-cache.internal:6379');
    expect(resolved.config.secrets).toEqual({
      signingKey: keys.signing_key,
      encryptionKey: envKey,
      urlSigningKey: keys.url_signing_key,
      metricsToken: 'metrics-from-vault',
    });
  });

  it('validates what Vault gives like a variable, and says it came from Vault without repeating it', async () => {
    const vault = await vaultWith({ database_url: 'mysql://user:hunter2-db@db/celforge' });
    const error = await resolveConfig({ CELFORGE_DATA_DIR: storage.dataDir, ...appRoleEnv(vault) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe('DATABASE_URL: must start with postgres:// or postgresql:// (given by Vault as database_url)');
    const bad = await vaultWith({ encryption_key: 'c2hvcnQ=' });
    const keyError = await resolveConfig({ CELFORGE_DATA_DIR: storage.dataDir, ...appRoleEnv(bad) }).catch((e: unknown) => e);
    expect((keyError as Error).message).toMatch(/^CELFORGE_ENCRYPTION_KEY: master key must be/);
    expect((keyError as Error).message).not.toContain('c2hvcnQ');
  });

  it('scale-out without a shared secret stops with one line naming each missing variable', async () => {
    const error = await resolveConfig(
      { CELFORGE_DATA_DIR: storage.dataDir, DATABASE_URL: 'postgres://db/celforge', CELFORGE_ENCRYPTION_KEY: randomBytes(32).toString('base64') },
      { requireSecrets: true },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/^CELFORGE_SIGNING_KEY, CELFORGE_URL_SIGNING_KEY are required when DATABASE_URL is set/);
    expect((error as Error).message).not.toContain('\n');
  });

  it('embedded mode makes the encryption and URL-signing keys once, in the data dir, mode 0600', async () => {
    const first = await resolveConfig({ CELFORGE_DATA_DIR: storage.dataDir }, { requireSecrets: true });
    const second = await resolveConfig({ CELFORGE_DATA_DIR: storage.dataDir }, { requireSecrets: true });
    expect(Buffer.from(first.config.secrets.encryptionKey!, 'base64')).toHaveLength(32);
    expect(second.config.secrets).toEqual(first.config.secrets);
    expect(first.config.secrets.urlSigningKey).not.toBe(first.config.secrets.encryptionKey);
    for (const name of ['encryption-key', 'url-signing-key']) {
      const file = path.join(storage.dataDir, 'secrets', name);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(readFileSync(file, 'utf8').trim()).toBe(name === 'encryption-key' ? first.config.secrets.encryptionKey : first.config.secrets.urlSigningKey);
    }
    expect(statSync(path.join(storage.dataDir, 'secrets')).mode & 0o777).toBe(0o700);
  });
});

describeEachDialect('celforge serve configured through Vault', (dialect) => {
  let storage: TestStorage;
  beforeAll(async () => {
    storage = await createTestStorage(dialect);
  });
  afterAll(async () => storage.drop());

  it('serves with the database and keys from Vault (AppRole), and the JWKS shows the Vault-given key', async () => {
    const keys = newKeys();
    const { kid, ...secrets } = keys;
    const vault = await vaultWith({ ...secrets, ...(storage.databaseUrl && { database_url: storage.databaseUrl }) });
    // Only the data dir and Vault's address and AppRole come from the environment.
    const server = await startServer({ dataDir: storage.dataDir }, { env: appRoleEnv(vault) });
    try {
      const jwks = (await (await fetch(`${server.url}/api/auth/jwks.json`)).json()) as { keys: { kid: string }[] };
      expect(jwks.keys.map((k) => k.kid)).toEqual([kid]);
      expect(await (await fetch(`${server.url}/api/anime/ready`)).json()).toEqual({ status: 'ready' });
      expect(vault.calls.some((c) => c.path === '/v1/auth/approle/login')).toBe(true);
      expect(vault.calls.some((c) => c.path === '/v1/secret/data/celforge' && c.withToken)).toBe(true);
      if (storage.databaseUrl) {
        // the schema was made in the PostgreSQL database Vault named
        const client = new pg.Client({ connectionString: storage.databaseUrl });
        await client.connect();
        const { rows } = await client.query(`select count(*)::int as n from information_schema.tables where table_name = 'audit_log'`);
        await client.end();
        expect(rows[0].n).toBe(1);
      }
      const output = server.output();
      for (const secret of [SECRET_ID, secrets.signing_key.split('\n')[1]!, secrets.encryption_key, secrets.url_signing_key, ...vault.issuedTokens]) {
        expect(output).not.toContain(secret);
      }
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it('a Vault lacking a required secret in scale-out mode stops start-up: exit 2, one line naming it', async () => {
    const { kid: _kid, url_signing_key: _missing, ...secrets } = newKeys();
    const vault = await vaultWith({ ...secrets, database_url: storage.databaseUrl ?? 'postgres://127.0.0.1:1/none' });
    const result = await runCli(['serve'], { dataDir: storage.dataDir }, { env: appRoleEnv(vault) });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^celforge: CELFORGE_URL_SIGNING_KEY is required when DATABASE_URL is set/);
    expect(result.stderr).not.toContain(SECRET_ID);
    expect(result.stderr).not.toContain(secrets.encryption_key);
  });
});

describe('celforge and an unusable Vault', () => {
  let storage: TestStorage;
  beforeAll(async () => {
    storage = await createTestStorage('sqlite');
  });
  afterAll(async () => storage.drop());

  it('Vault unreachable: a clear error and a non-zero exit, no secret printed', async () => {
    const port = await closedPort();
    const result = await runCli(['serve'], storage, {
      env: { CELFORGE_VAULT_ADDR: `http://127.0.0.1:${port}`, CELFORGE_VAULT_ROLE_ID: ROLE_ID, CELFORGE_VAULT_SECRET_ID: SECRET_ID },
    });
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toBe(`celforge: vault: unreachable at http://127.0.0.1:${port}: connection refused (ECONNREFUSED)`);
    expect(result.stderr + result.stdout).not.toContain(SECRET_ID);
  });

  it('wrong AppRole credentials: refused, and the secret id is not repeated', async () => {
    const vault = await vaultWith({});
    const result = await runCli(['serve'], storage, {
      env: { ...appRoleEnv(vault), CELFORGE_VAULT_SECRET_ID: 'sid-wrong-7f3a' },
    });
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toMatch(/^celforge: vault: invalid request logging in with AppRole \(400\)/);
    expect(result.stderr).not.toContain('sid-wrong-7f3a');
  });
});
