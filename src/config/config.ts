import { isIP } from 'node:net';
import path from 'node:path';
import { parseAssetSettings, type AssetSettings } from './assets.js';
import { parseInteger, parseDuration, readSettings } from './read-settings.js';
import {
  AccountVariables,
  AuditVariables,
  LimitVariables,
  RenderingVariables,
  ServerVariables,
  StoreVariables,
  VaultVariables,
} from './settings.js';
import { parseSsoProviders, type SsoProviderSettings } from './sso.js';
import { ConfigError, type Env } from './variables.js';

export { ConfigError, readVariable, type Env } from './variables.js';
export { parseDuration } from './read-settings.js';

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

const limitDefaults = readSettings({}, LimitVariables);

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
  costs: { image: limitDefaults.CELFORGE_IMAGE_COST, video: limitDefaults.CELFORGE_VIDEO_COST },
  activeJobs: limitDefaults.CELFORGE_QUOTA_ACTIVE_JOBS,
  jobsPerDay: limitDefaults.CELFORGE_QUOTA_JOBS_PER_DAY,
};

/**
 * `CELFORGE_RATE_LIMITS="read=600/60s,signin-account=10/15m"`: each item overrides one policy's
 * quota per window; the others keep their defaults.
 */
export function parseRateLimits(text: string | undefined): Record<RatePolicyName, RatePolicy> {
  const rates = structuredClone(DEFAULT_LIMITS.rates);
  const items = (text ?? '').split(',').map((item) => item.trim()).filter(Boolean);
  for (const item of items) {
    const match = /^([a-z-]+)\s*=\s*(\d+)\s*\/\s*(\S+)$/.exec(item);
    if (!match) throw new ConfigError(`CELFORGE_RATE_LIMITS: "${item}" is not like read=600/60s`);
    const name = RATE_POLICIES.find((policy) => policy === match[1]);
    if (!name) throw new ConfigError(`CELFORGE_RATE_LIMITS: "${match[1]}" is not one of ${RATE_POLICIES.join(', ')}`);
    rates[name] = {
      quota: parseInteger('CELFORGE_RATE_LIMITS', match[2]!, 1, 1_000_000_000),
      windowSeconds: parseDuration('CELFORGE_RATE_LIMITS', match[3]!),
    };
  }
  return rates;
}

function parseLimits(env: Env): LimitSettings {
  const limits = readSettings(env, LimitVariables);
  return {
    rates: parseRateLimits(limits.CELFORGE_RATE_LIMITS),
    costs: { image: limits.CELFORGE_IMAGE_COST, video: limits.CELFORGE_VIDEO_COST },
    activeJobs: limits.CELFORGE_QUOTA_ACTIVE_JOBS,
    jobsPerDay: limits.CELFORGE_QUOTA_JOBS_PER_DAY,
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

function parseVault(env: Env): VaultSettings | undefined {
  const vault = readSettings(env, VaultVariables);
  if (!vault.CELFORGE_VAULT_ADDR) return undefined;
  const { CELFORGE_VAULT_TOKEN: token, CELFORGE_VAULT_ROLE_ID: roleId, CELFORGE_VAULT_SECRET_ID: secretId } = vault;
  if (!token && !(roleId && secretId)) {
    throw new ConfigError('CELFORGE_VAULT_ADDR is set: set CELFORGE_VAULT_TOKEN, or CELFORGE_VAULT_ROLE_ID and CELFORGE_VAULT_SECRET_ID');
  }
  if (token && (roleId || secretId)) {
    throw new ConfigError('set either CELFORGE_VAULT_TOKEN or the AppRole pair, not both');
  }
  return {
    addr: vault.CELFORGE_VAULT_ADDR,
    token,
    roleId,
    secretId,
    namespace: vault.CELFORGE_VAULT_NAMESPACE,
    mount: vault.CELFORGE_VAULT_MOUNT,
    path: vault.CELFORGE_VAULT_PATH,
  };
}

/** `admin=4,user=1` (each item already matched the schema's pattern) → weights, 0.01–100 each */
function roleWeights(items: string[] | undefined): Config['fleetRoleWeights'] {
  if (!items) return undefined;
  const weights: NonNullable<Config['fleetRoleWeights']> = {};
  for (const item of items) {
    const [role, text] = item.split('=') as ['admin' | 'user', string];
    const weight = Number(text);
    if (weight < 0.01 || weight > 100) throw new ConfigError(`CELFORGE_FLEET_ROLE_WEIGHTS: ${weight} is outside 0.01–100`);
    weights[role] = weight;
  }
  return weights;
}

/**
 * Reads the configuration once, from the environment and `*_FILE` twins, as the schemas of
 * settings.ts say. Vault values are merged afterwards by `resolveConfig`, so this stays
 * synchronous and testable.
 */
export function loadConfig(env: Env = process.env): Config {
  const server = readSettings(env, ServerVariables);
  const store = readSettings(env, StoreVariables);
  const accounts = readSettings(env, AccountVariables);
  const rendering = readSettings(env, RenderingVariables);
  const audit = readSettings(env, AuditVariables);
  const comfyuiUrls = rendering.CELFORGE_COMFYUI_URLS;
  if (rendering.CELFORGE_RENDERER === 'comfyui' && comfyuiUrls.length === 0) {
    throw new ConfigError('CELFORGE_RENDERER=comfyui needs CELFORGE_COMFYUI_URLS');
  }
  const depths = rendering.CELFORGE_COMFYUI_DEPTH;
  if (depths && depths.length !== 1 && depths.length !== comfyuiUrls.length) {
    throw new ConfigError('CELFORGE_COMFYUI_DEPTH: give one value, or one per CELFORGE_COMFYUI_URLS entry');
  }
  const { CELFORGE_HOST: host, CELFORGE_PORT: port } = server;

  return {
    host,
    port,
    publicUrl: server.CELFORGE_PUBLIC_URL ?? new URL(`http://${isIP(host) === 6 ? `[${host}]` : host}:${port}`).origin,
    dataDir: path.resolve(server.CELFORGE_DATA_DIR),
    databaseUrl: store.DATABASE_URL,
    redisUrl: store.REDIS_URL,
    redisPrefix: store.CELFORGE_REDIS_PREFIX,
    corsOrigins: server.CELFORGE_CORS_ORIGINS,
    trustProxy: server.CELFORGE_TRUST_PROXY,
    accessTokenTtlSeconds: accounts.CELFORGE_ACCESS_TOKEN_TTL,
    renderer: rendering.CELFORGE_RENDERER,
    comfyuiUrls,
    comfyuiCheckpoint: rendering.CELFORGE_COMFYUI_CHECKPOINT,
    comfyuiMaxOutputBytes: rendering.CELFORGE_COMFYUI_MAX_OUTPUT_BYTES,
    previewStepMs: rendering.CELFORGE_PREVIEW_STEP_MS,
    workerConcurrency: rendering.CELFORGE_WORKER_CONCURRENCY,
    comfyuiDepths: depths,
    fleetUserMaxRunning: rendering.CELFORGE_FLEET_USER_MAX_RUNNING,
    fleetRoleWeights: roleWeights(rendering.CELFORGE_FLEET_ROLE_WEIGHTS),
    jobTimeoutSeconds: rendering.CELFORGE_JOB_TIMEOUT,
    jobLeaseSeconds: rendering.CELFORGE_JOB_LEASE,
    shutdownGraceSeconds: server.CELFORGE_SHUTDOWN_GRACE,
    authUrl: accounts.CELFORGE_AUTH_URL,
    vault: parseVault(env),
    adminEmail: accounts.CELFORGE_ADMIN_EMAIL,
    adminPassword: accounts.CELFORGE_ADMIN_PASSWORD,
    bodyLimit: server.CELFORGE_BODY_LIMIT,
    logLevel: server.CELFORGE_LOG_LEVEL,
    limits: parseLimits(env),
    auditRetentionDays: audit.CELFORGE_AUDIT_RETENTION_DAYS,
    auditCheckpointFile: audit.CELFORGE_AUDIT_CHECKPOINT_FILE,
    secrets: {
      signingKey: accounts.CELFORGE_SIGNING_KEY,
      encryptionKey: accounts.CELFORGE_ENCRYPTION_KEY,
      urlSigningKey: accounts.CELFORGE_URL_SIGNING_KEY,
      metricsToken: accounts.CELFORGE_METRICS_TOKEN,
      serviceToken: accounts.CELFORGE_SERVICE_TOKEN,
    },
    assets: parseAssetSettings(env),
    sso: parseSsoProviders(env),
  };
}

/** A config for tests and the benchmark: the defaults, with overrides. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return { ...loadConfig({}), logLevel: 'silent', ...overrides };
}
