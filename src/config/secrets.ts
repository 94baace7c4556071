import { parseMasterKey } from './master-key.js';
import { ConfigError, loadConfig, type Config, type Env } from './config.js';
import { localSecret, randomKey } from './local-secrets.js';
import { vaultKeys } from './read-settings.js';
import { MAIN_GROUPS } from './settings.js';
import { ssoVaultKeys } from './sso.js';
import { openVaultSecrets, type VaultError, type VaultSecrets } from './vault.js';

/** Vault KV key → the variable it stands in for. */
const VAULT_KEYS: Record<string, string> = Object.assign({}, ...MAIN_GROUPS.map((group) => vaultKeys(group)));

/** Secrets every instance of a scale-out deployment must share, so none may be made locally. */
const SHARED_SECRETS = [
  ['signingKey', 'CELFORGE_SIGNING_KEY'],
  ['encryptionKey', 'CELFORGE_ENCRYPTION_KEY'],
  ['urlSigningKey', 'CELFORGE_URL_SIGNING_KEY'],
] as const;

export interface ResolvedConfig {
  config: Config;
  /** stops the Vault token renewal, if any */
  close(): void;
}

export interface ResolveOptions {
  /**
   * Commands that sign tokens, encrypt or sign URLs need the shared secrets: in scale-out mode
   * a missing one is a start-up error, in embedded mode the missing ones are made in the data dir.
   */
  requireSecrets?: boolean;
  /** told about background Vault token renewal failures */
  onVaultError?: (error: VaultError) => void;
}

function given(env: Env, name: string): boolean {
  return Boolean(env[name]) || Boolean(env[`${name}_FILE`]);
}

/**
 * The configuration from env and `*_FILE`, completed from Vault when `CELFORGE_VAULT_ADDR` is set.
 * A value set in the environment wins over Vault's. Vault's values pass the same validation as
 * the environment's (they are read as if they were variables), and an error says where it came from.
 */
export async function resolveConfig(env: Env = process.env, options: ResolveOptions = {}): Promise<ResolvedConfig> {
  let config = loadConfig(env);
  let vault: VaultSecrets | undefined;
  if (config.vault) {
    vault = await openVaultSecrets({ ...config.vault, onError: options.onVaultError });
    const merged: Env = { ...env };
    const fromVault = new Set<string>();
    const keys = { ...VAULT_KEYS, ...ssoVaultKeys(env) };
    for (const [key, variable] of Object.entries(keys)) {
      const value = vault.get(key);
      if (value === undefined || value === '' || given(env, variable)) continue;
      merged[variable] = value;
      fromVault.add(variable);
    }
    try {
      config = loadConfig(merged);
    } catch (error) {
      vault.close();
      const variable = error instanceof ConfigError ? [...fromVault].find((v) => error.message.startsWith(`${v}:`)) : undefined;
      if (variable) throw new ConfigError(`${error instanceof Error ? error.message : ''} (given by Vault as ${Object.entries(keys).find(([, v]) => v === variable)![0]})`);
      throw error;
    }
  }
  try {
    if (options.requireSecrets) config = completeSecrets(config);
    validateSecrets(config);
  } catch (error) {
    vault?.close();
    throw error;
  }
  return { config, close: () => vault?.close() };
}

function variableKey(variable: string): string {
  return Object.entries(VAULT_KEYS).find(([, v]) => v === variable)![0];
}

/**
 * Scale-out (DATABASE_URL set): every shared secret must have been given, or start-up stops
 * with one line naming the missing ones. Embedded: the missing ones are made in the data dir
 * (the signing key by the key store, the others here).
 */
export function completeSecrets(config: Config): Config {
  if (config.databaseUrl) {
    const missing = SHARED_SECRETS.filter(([field]) => !config.secrets[field]).map(([, variable]) => variable);
    if (missing.length > 0) {
      throw new ConfigError(
        `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} required when DATABASE_URL is set (every instance must share ${missing.length === 1 ? 'it' : 'them'}): set ${missing.length === 1 ? 'it' : 'them'}, a *_FILE twin, or the Vault key ${missing.map(variableKey).join(', ')}`,
      );
    }
    return config;
  }
  return {
    ...config,
    secrets: {
      ...config.secrets,
      encryptionKey: config.secrets.encryptionKey ?? localSecret(config.dataDir, 'encryption-key', randomKey),
      urlSigningKey: config.secrets.urlSigningKey ?? localSecret(config.dataDir, 'url-signing-key', randomKey),
    },
  };
}

/** Checks the form of the secrets that were given; messages never repeat a value. */
function validateSecrets(config: Config): void {
  const { encryptionKey, urlSigningKey } = config.secrets;
  if (encryptionKey !== undefined) {
    try {
      parseMasterKey(encryptionKey);
    } catch (error) {
      throw new ConfigError(`CELFORGE_ENCRYPTION_KEY: ${(error as Error).message}`);
    }
  }
  if (urlSigningKey !== undefined && Buffer.from(urlSigningKey, 'base64').length < 32) {
    throw new ConfigError('CELFORGE_URL_SIGNING_KEY: must be base64 of at least 32 random bytes');
  }
}
