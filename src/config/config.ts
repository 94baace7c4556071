import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { parseAssetSettings, type AssetSettings } from './assets.js';
import { parseSsoProviders, type SsoProviderSettings } from './sso.js';

/** A bad setting: start-up stops with this one line. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export type RendererName = 'preview' | 'comfyui';

export interface Config {
  host: string;
  port: number;
  /** the origin clients address (scheme://host[:port]); signed target URIs are built from it, never from Host */
  publicUrl: string;
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
  /** checkpoint the ComfyUI workflows load (unset: the renderer's default) */
  comfyuiCheckpoint?: string;
  /** largest ComfyUI output file downloaded, bytes (unset: the renderer's default, 200 MiB) */
  comfyuiMaxOutputBytes?: number;
  /** preview renderer: pause between progress ticks (CELFORGE_PREVIEW_STEP_MS); unset = its default */
  previewStepMs?: number;
  /** jobs one worker renders at once */
  workerConcurrency: number;
  /** prompts each ComfyUI backend is kept deep, one per URL (a single value applies to all) */
  comfyuiDepths?: number[];
  /** jobs one user may have running at once (admins override it per user); unset: no cap */
  fleetUserMaxRunning?: number;
  /** fair-share weight of each role's users unless an admin set a user's own (CELFORGE_FLEET_ROLE_WEIGHTS); unset: 1 */
  fleetRoleWeights?: Partial<Record<'admin' | 'user', number>>;
  /** a job running longer than this fails */
  jobTimeoutSeconds: number;
  /** a worker's claim on a running job; a crashed worker's jobs are taken over once it lapses */
  jobLeaseSeconds: number;
  /** on SIGTERM: how long requests in flight may take before their connections are closed */
  shutdownGraceSeconds: number;
  authUrl?: string;
  vault?: VaultSettings;
  adminEmail?: string;
  adminPassword?: string;
  /** largest accepted request body, bytes */
  bodyLimit: number;
  logLevel: string;
  /** rate limits per class, generation costs and per-user job quotas */
  limits: LimitSettings;
  /** audit rows older than this many days are pruned; 0 keeps them forever */
  auditRetentionDays: number;
  /** signed audit checkpoints are appended here too (they always go to the log) */
  auditCheckpointFile?: string;
  /** secrets from env, *_FILE or Vault; embedded mode makes the missing ones in dataDir */
  secrets: Secrets;
  /** where results live (data dir or S3), how they are delivered, storage quota, retention */
  assets: AssetSettings;
  /** OpenID Connect providers users may sign in with (CELFORGE_OIDC_PROVIDERS) */
  sso: SsoProviderSettings[];
}

/** Names of the rate-limit policies; `signin-*`, `refresh` and `anonymous` are keyed by client address. */
export const RATE_POLICIES = ['signin-ip', 'signin-account', 'refresh', 'generation', 'read', 'write', 'admin', 'anonymous'] as const;
export type RatePolicyName = (typeof RATE_POLICIES)[number];

export interface RatePolicy {
  /** units allowed per window (a request costs 1; a generation costs its weight) */
  quota: number;
  windowSeconds: number;
}

export interface LimitSettings {
  rates: Record<RatePolicyName, RatePolicy>;
  /** generation weights: what one job of each type costs in the generation window */
  costs: { image: number; video: number };
  /** per-user defaults; admins override them per user */
  activeJobs: number;
  jobsPerDay: number;
}

export const DEFAULT_LIMITS: LimitSettings = {
  rates: {
    'signin-ip': { quota: 20, windowSeconds: 60 },
    'signin-account': { quota: 10, windowSeconds: 900 },
    // every studio tab refreshes once per load; a household or office behind one address reloads a lot
    refresh: { quota: 300, windowSeconds: 60 },
    generation: { quota: 30, windowSeconds: 60 },
    read: { quota: 600, windowSeconds: 60 },
    write: { quota: 120, windowSeconds: 60 },
    admin: { quota: 300, windowSeconds: 60 },
    anonymous: { quota: 120, windowSeconds: 60 },
  },
  costs: { image: 1, video: 5 },
  activeJobs: 3,
  jobsPerDay: 200,
};

/**
 * `CELFORGE_RATE_LIMITS="read=600/60s,signin-account=10/15m"`: each item overrides one policy's
 * quota per window; the others keep their defaults.
 */
export function parseRateLimits(text: string | undefined): Record<RatePolicyName, RatePolicy> {
  const rates = structuredClone(DEFAULT_LIMITS.rates);
  for (const item of parseList(text)) {
    const match = /^([a-z-]+)\s*=\s*(\d+)\s*\/\s*(\S+)$/.exec(item);
    if (!match) throw new ConfigError(`CELFORGE_RATE_LIMITS: "${item}" is not like read=600/60s`);
    const name = match[1] as RatePolicyName;
    if (!RATE_POLICIES.includes(name)) {
      throw new ConfigError(`CELFORGE_RATE_LIMITS: "${name}" is not one of ${RATE_POLICIES.join(', ')}`);
    }
    rates[name] = {
      quota: parseInteger('CELFORGE_RATE_LIMITS', match[2]!, 1, 1_000_000_000),
      windowSeconds: parseDuration('CELFORGE_RATE_LIMITS', match[3]!),
    };
  }
  return rates;
}

function parseLimits(env: Env): LimitSettings {
  const number = (name: string, fallback: number, min: number, max: number) => {
    const text = readVariable(env, name);
    return text === undefined ? fallback : parseInteger(name, text, min, max);
  };
  return {
    rates: parseRateLimits(readVariable(env, 'CELFORGE_RATE_LIMITS')),
    costs: {
      image: number('CELFORGE_IMAGE_COST', DEFAULT_LIMITS.costs.image, 1, 1000),
      video: number('CELFORGE_VIDEO_COST', DEFAULT_LIMITS.costs.video, 1, 1000),
    },
    activeJobs: number('CELFORGE_QUOTA_ACTIVE_JOBS', DEFAULT_LIMITS.activeJobs, 0, 100_000),
    jobsPerDay: number('CELFORGE_QUOTA_JOBS_PER_DAY', DEFAULT_LIMITS.jobsPerDay, 0, 10_000_000),
  };
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
  /** shared by the auth service and its API nodes in a split deployment (revocation feed) */
  serviceToken?: string;
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

function parseDepths(text: string | undefined, urls: number): number[] | undefined {
  if (text === undefined) return undefined;
  const depths = parseList(text).map((item) => parseInteger('CELFORGE_COMFYUI_DEPTH', item, 1, 16));
  if (depths.length !== 1 && depths.length !== urls) throw new ConfigError('CELFORGE_COMFYUI_DEPTH: give one value, or one per CELFORGE_COMFYUI_URLS entry');
  return depths;
}

/** `CELFORGE_FLEET_ROLE_WEIGHTS="admin=4,user=1"`: a role's default fair-share weight, 0.01–100. */
function parseRoleWeights(text: string | undefined): Partial<Record<'admin' | 'user', number>> | undefined {
  if (text === undefined) return undefined;
  const weights: Partial<Record<'admin' | 'user', number>> = {};
  for (const item of parseList(text)) {
    const match = /^(admin|user)=(\d+(?:\.\d+)?)$/.exec(item);
    if (!match) throw new ConfigError(`CELFORGE_FLEET_ROLE_WEIGHTS: "${item}" is not role=weight (roles: admin, user)`);
    const weight = Number(match[2]);
    if (weight < 0.01 || weight > 100) throw new ConfigError(`CELFORGE_FLEET_ROLE_WEIGHTS: ${weight} is outside 0.01–100`);
    weights[match[1] as 'admin' | 'user'] = weight;
  }
  return weights;
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

  const port = parseInteger('CELFORGE_PORT', readVariable(env, 'CELFORGE_PORT') ?? '8331', 0, 65535);
  const publicUrl = readVariable(env, 'CELFORGE_PUBLIC_URL');

  return {
    host,
    port,
    publicUrl: publicUrl ? parseOrigin('CELFORGE_PUBLIC_URL', publicUrl) : new URL(`http://${isIP(host) === 6 ? `[${host}]` : host}:${port}`).origin,
    dataDir: path.resolve(readVariable(env, 'CELFORGE_DATA_DIR') ?? './data'),
    databaseUrl: databaseUrl && parseUrl('DATABASE_URL', databaseUrl, ['postgres:', 'postgresql:']),
    redisUrl: redisUrl && parseUrl('REDIS_URL', redisUrl, ['redis:', 'rediss:']),
    redisPrefix: readVariable(env, 'CELFORGE_REDIS_PREFIX') ?? 'celforge:',
    corsOrigins: parseList(readVariable(env, 'CELFORGE_CORS_ORIGINS')).map((o) => parseOrigin('CELFORGE_CORS_ORIGINS', o)),
    trustProxy: parseList(readVariable(env, 'CELFORGE_TRUST_PROXY')).map((p) => parseProxy('CELFORGE_TRUST_PROXY', p)),
    accessTokenTtlSeconds: parseDuration('CELFORGE_ACCESS_TOKEN_TTL', readVariable(env, 'CELFORGE_ACCESS_TOKEN_TTL') ?? '15m'),
    renderer,
    comfyuiUrls,
    comfyuiCheckpoint: readVariable(env, 'CELFORGE_COMFYUI_CHECKPOINT'),
    comfyuiMaxOutputBytes: optionalInteger(env, 'CELFORGE_COMFYUI_MAX_OUTPUT_BYTES', 1024, 2 * 1024 ** 3),
    previewStepMs: optionalInteger(env, 'CELFORGE_PREVIEW_STEP_MS', 0, 60_000),
    workerConcurrency: parseInteger('CELFORGE_WORKER_CONCURRENCY', readVariable(env, 'CELFORGE_WORKER_CONCURRENCY') ?? '2', 1, 64),
    comfyuiDepths: parseDepths(readVariable(env, 'CELFORGE_COMFYUI_DEPTH'), comfyuiUrls.length),
    fleetUserMaxRunning: optionalInteger(env, 'CELFORGE_FLEET_USER_MAX_RUNNING', 1, 100_000),
    fleetRoleWeights: parseRoleWeights(readVariable(env, 'CELFORGE_FLEET_ROLE_WEIGHTS')),
    jobTimeoutSeconds: parseDuration('CELFORGE_JOB_TIMEOUT', readVariable(env, 'CELFORGE_JOB_TIMEOUT') ?? '10m'),
    jobLeaseSeconds: parseDuration('CELFORGE_JOB_LEASE', readVariable(env, 'CELFORGE_JOB_LEASE') ?? '30s'),
    shutdownGraceSeconds: parseDuration('CELFORGE_SHUTDOWN_GRACE', readVariable(env, 'CELFORGE_SHUTDOWN_GRACE') ?? '10s'),
    authUrl: authUrl && parseUrl('CELFORGE_AUTH_URL', authUrl, ['http:', 'https:']),
    vault: parseVault(env),
    adminEmail: readVariable(env, 'CELFORGE_ADMIN_EMAIL'),
    adminPassword: readVariable(env, 'CELFORGE_ADMIN_PASSWORD'),
    bodyLimit: parseInteger('CELFORGE_BODY_LIMIT', readVariable(env, 'CELFORGE_BODY_LIMIT') ?? '65536', 1024, 16 * 1024 * 1024),
    logLevel: parseLogLevel(readVariable(env, 'CELFORGE_LOG_LEVEL') ?? 'info'),
    limits: parseLimits(env),
    auditRetentionDays: parseInteger('CELFORGE_AUDIT_RETENTION_DAYS', readVariable(env, 'CELFORGE_AUDIT_RETENTION_DAYS') ?? '365', 0, 36500),
    auditCheckpointFile: readVariable(env, 'CELFORGE_AUDIT_CHECKPOINT_FILE'),
    secrets: {
      signingKey: readVariable(env, 'CELFORGE_SIGNING_KEY'),
      encryptionKey: readVariable(env, 'CELFORGE_ENCRYPTION_KEY'),
      urlSigningKey: readVariable(env, 'CELFORGE_URL_SIGNING_KEY'),
      metricsToken: readVariable(env, 'CELFORGE_METRICS_TOKEN'),
      serviceToken: readVariable(env, 'CELFORGE_SERVICE_TOKEN'),
    },
    assets: parseAssetSettings(env),
    sso: parseSsoProviders(env),
  };
}

/** A config for tests and the benchmark: the defaults, with overrides. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return { ...loadConfig({}), logLevel: 'silent', ...overrides };
}
