import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';

/** A bad setting: start-up stops with this one line. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export type RendererName = 'preview' | 'comfyui';

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** unset = embedded SQLite in dataDir */
  databaseUrl?: string;
  /** unset = in-process queue, in-memory limits */
  redisUrl?: string;
  /** prefix of every Redis key, so several deployments (or test runs) can share one Redis */
  redisPrefix: string;
  corsOrigins: string[];
  /** proxy addresses/CIDRs whose X-Forwarded-* is believed */
  trustProxy: string[];
  accessTokenTtlSeconds: number;
  renderer: RendererName;
  comfyuiUrls: string[];
  /** preview renderer: pause between progress ticks (CELFORGE_PREVIEW_STEP_MS); unset = its default */
  previewStepMs?: number;
  /** jobs one worker renders at once */
  workerConcurrency: number;
  /** a job running longer than this fails */
  jobTimeoutSeconds: number;
  /** a worker's claim on a running job; a crashed worker's jobs are taken over once it lapses */
  jobLeaseSeconds: number;
  authUrl?: string;
  vault?: VaultSettings;
  adminEmail?: string;
  adminPassword?: string;
  /** largest accepted request body, bytes */
  bodyLimit: number;
  logLevel: string;
  /** secrets from env, *_FILE or Vault; embedded mode makes the missing ones in dataDir */
  secrets: Secrets;
}

export interface VaultSettings {
  addr: string;
  token?: string;
  roleId?: string;
  secretId?: string;
  namespace?: string;
  mount: string;
  path: string;
}

export interface Secrets {
  /** Ed25519 private key (PKCS#8 PEM or JWK JSON) that signs access tokens */
  signingKey?: string;
  /** 32-byte master key (base64) for secrets at rest */
  encryptionKey?: string;
  /** key (base64) for signed asset URLs */
  urlSigningKey?: string;
  metricsToken?: string;
}

export type Env = Record<string, string | undefined>;

/**
 * Reads a variable or its `NAME_FILE` twin (the file's content, trailing newline trimmed).
 * Setting both is ambiguous and refused.
 */
export function readVariable(env: Env, name: string): string | undefined {
  const direct = env[name];
  const file = env[`${name}_FILE`];
  if (direct !== undefined && direct !== '' && file) {
    throw new ConfigError(`${name} and ${name}_FILE are both set; set one`);
  }
  if (file) {
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch {
      throw new ConfigError(`${name}_FILE: cannot read the file it names`);
    }
  }
  return direct === '' ? undefined : direct;
}

const DURATION = /^(\d+)\s*(ms|s|m|h|d)?$/;
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** "15m", "900s", "900", "1h" → seconds */
export function parseDuration(name: string, text: string): number {
  const match = DURATION.exec(text.trim());
  if (!match) throw new ConfigError(`${name}: "${text}" is not a duration like 15m, 900s or 1h`);
  const seconds = Number(match[1]) * UNIT_SECONDS[match[2] ?? 's']!;
  if (!Number.isFinite(seconds) || seconds < 1) throw new ConfigError(`${name}: must be at least 1s`);
  return Math.floor(seconds);
}

function parseInteger(name: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text.trim())) throw new ConfigError(`${name}: "${text}" is not a whole number`);
  const value = Number(text);
  if (value < min || value > max) throw new ConfigError(`${name}: ${value} is outside ${min}–${max}`);
  return value;
}

function optionalInteger(env: Env, name: string, min: number, max: number): number | undefined {
  const text = readVariable(env, name);
  return text === undefined ? undefined : parseInteger(name, text, min, max);
}

function parseUrl(name: string, text: string, protocols: string[]): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${name}: not a valid URL`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(`${name}: must start with ${protocols.map((p) => `${p}//`).join(' or ')}`);
  }
  return text;
}

function parseList(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

function parseOrigin(name: string, text: string): string {
  parseUrl(name, text, ['http:', 'https:']);
  const origin = new URL(text).origin;
  if (origin !== text.replace(/\/$/, '')) throw new ConfigError(`${name}: "${text}" is not a bare origin like https://studio.example`);
  return origin;
}

function parseProxy(name: string, text: string): string {
  const [address, bits, ...rest] = text.split('/');
  const family = isIP(address ?? '');
  const maxBits = family === 6 ? 128 : 32;
  if (!family || rest.length > 0 || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= maxBits))) {
    throw new ConfigError(`${name}: "${text}" is not an IP address or CIDR`);
  }
  return text;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function parseLogLevel(text: string): string {
  if (!LOG_LEVELS.includes(text)) throw new ConfigError(`CELFORGE_LOG_LEVEL: "${text}" is not one of ${LOG_LEVELS.join(', ')}`);
  return text;
}

function parseVault(env: Env): VaultSettings | undefined {
  const addr = readVariable(env, 'CELFORGE_VAULT_ADDR');
  if (!addr) return undefined;
  parseUrl('CELFORGE_VAULT_ADDR', addr, ['http:', 'https:']);
  const token = readVariable(env, 'CELFORGE_VAULT_TOKEN');
  const roleId = readVariable(env, 'CELFORGE_VAULT_ROLE_ID');
  const secretId = readVariable(env, 'CELFORGE_VAULT_SECRET_ID');
  if (!token && !(roleId && secretId)) {
    throw new ConfigError('CELFORGE_VAULT_ADDR is set: set CELFORGE_VAULT_TOKEN, or CELFORGE_VAULT_ROLE_ID and CELFORGE_VAULT_SECRET_ID');
  }
  if (token && (roleId || secretId)) {
    throw new ConfigError('set either CELFORGE_VAULT_TOKEN or the AppRole pair, not both');
  }
  return {
    addr,
    token,
    roleId,
    secretId,
    namespace: readVariable(env, 'CELFORGE_VAULT_NAMESPACE'),
    mount: readVariable(env, 'CELFORGE_VAULT_MOUNT') ?? 'secret',
    path: readVariable(env, 'CELFORGE_VAULT_PATH') ?? 'celforge',
  };
}

/**
 * Reads the configuration once, from the environment and `*_FILE` twins. Vault values are merged
 * afterwards by `withVaultSecrets`, so this stays synchronous and testable.
 */
export function loadConfig(env: Env = process.env): Config {
  const renderer = readVariable(env, 'CELFORGE_RENDERER') ?? 'preview';
  if (renderer !== 'preview' && renderer !== 'comfyui') {
    throw new ConfigError(`CELFORGE_RENDERER: "${renderer}" is not one of preview, comfyui`);
  }
  const comfyuiUrls = parseList(readVariable(env, 'CELFORGE_COMFYUI_URLS')).map((url) =>
    parseUrl('CELFORGE_COMFYUI_URLS', url, ['http:', 'https:']),
  );
  if (renderer === 'comfyui' && comfyuiUrls.length === 0) {
    throw new ConfigError('CELFORGE_RENDERER=comfyui needs CELFORGE_COMFYUI_URLS');
  }
  const databaseUrl = readVariable(env, 'DATABASE_URL');
  const redisUrl = readVariable(env, 'REDIS_URL');
  const authUrl = readVariable(env, 'CELFORGE_AUTH_URL');
  const host = readVariable(env, 'CELFORGE_HOST') ?? '127.0.0.1';
  if (!isIP(host) && !/^[A-Za-z0-9.-]{1,253}$/.test(host)) throw new ConfigError(`CELFORGE_HOST: "${host}" is not a host`);

  return {
    host,
    port: parseInteger('CELFORGE_PORT', readVariable(env, 'CELFORGE_PORT') ?? '8331', 0, 65535),
    dataDir: path.resolve(readVariable(env, 'CELFORGE_DATA_DIR') ?? './data'),
    databaseUrl: databaseUrl && parseUrl('DATABASE_URL', databaseUrl, ['postgres:', 'postgresql:']),
    redisUrl: redisUrl && parseUrl('REDIS_URL', redisUrl, ['redis:', 'rediss:']),
    redisPrefix: readVariable(env, 'CELFORGE_REDIS_PREFIX') ?? 'celforge:',
    corsOrigins: parseList(readVariable(env, 'CELFORGE_CORS_ORIGINS')).map((o) => parseOrigin('CELFORGE_CORS_ORIGINS', o)),
    trustProxy: parseList(readVariable(env, 'CELFORGE_TRUST_PROXY')).map((p) => parseProxy('CELFORGE_TRUST_PROXY', p)),
    accessTokenTtlSeconds: parseDuration('CELFORGE_ACCESS_TOKEN_TTL', readVariable(env, 'CELFORGE_ACCESS_TOKEN_TTL') ?? '15m'),
    renderer,
    comfyuiUrls,
    previewStepMs: optionalInteger(env, 'CELFORGE_PREVIEW_STEP_MS', 0, 60_000),
    workerConcurrency: parseInteger('CELFORGE_WORKER_CONCURRENCY', readVariable(env, 'CELFORGE_WORKER_CONCURRENCY') ?? '2', 1, 64),
    jobTimeoutSeconds: parseDuration('CELFORGE_JOB_TIMEOUT', readVariable(env, 'CELFORGE_JOB_TIMEOUT') ?? '10m'),
    jobLeaseSeconds: parseDuration('CELFORGE_JOB_LEASE', readVariable(env, 'CELFORGE_JOB_LEASE') ?? '30s'),
    authUrl: authUrl && parseUrl('CELFORGE_AUTH_URL', authUrl, ['http:', 'https:']),
    vault: parseVault(env),
    adminEmail: readVariable(env, 'CELFORGE_ADMIN_EMAIL'),
    adminPassword: readVariable(env, 'CELFORGE_ADMIN_PASSWORD'),
    bodyLimit: parseInteger('CELFORGE_BODY_LIMIT', readVariable(env, 'CELFORGE_BODY_LIMIT') ?? '65536', 1024, 16 * 1024 * 1024),
    logLevel: parseLogLevel(readVariable(env, 'CELFORGE_LOG_LEVEL') ?? 'info'),
    secrets: {
      signingKey: readVariable(env, 'CELFORGE_SIGNING_KEY'),
      encryptionKey: readVariable(env, 'CELFORGE_ENCRYPTION_KEY'),
      urlSigningKey: readVariable(env, 'CELFORGE_URL_SIGNING_KEY'),
      metricsToken: readVariable(env, 'CELFORGE_METRICS_TOKEN'),
    },
  };
}

/** A config for tests and the benchmark: the defaults, with overrides. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return { ...loadConfig({}), logLevel: 'silent', ...overrides };
}
