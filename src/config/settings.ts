import { Type, type TProperties, type TSchema } from 'typebox';

/**
 * Every variable Celforge reads, one TypeBox schema per group: its type, default, constraints and
 * description. `readSettings` parses and checks the environment with these schemas, and README's
 * configuration tables are written from them (`npm run docs:config`).
 *
 * Beyond JSON Schema, a setting may say how its text is written (`form`), which URL schemes it
 * takes (`protocols`), what to say when its pattern does not match (`mismatch`), how the table
 * describes a patterned text to people (`shape`), what the table shows as its default when
 * Celforge does not fill one in (`defaultText`), and the Vault key that may hold it (`vault`).
 */
export type Form = 'duration' | 'url' | 'origin' | 'address' | 'host' | 'issuer';

interface Doc {
  form?: Form;
  protocols?: string[];
  mismatch?: string;
  shape?: string;
  defaultText?: string;
  vault?: string;
}

const HTTP = ['http:', 'https:'];

const text = (description: string, doc: Doc & { default?: string; pattern?: string } = {}) => Type.String({ description, ...doc });
const url = (description: string, protocols: string[], doc: Doc = {}) => text(description, { form: 'url', protocols, ...doc });
const whole = (description: string, minimum: number, maximum: number, doc: Doc & { default?: number } = {}) =>
  Type.Integer({ description, minimum, maximum, ...doc });
const duration = (description: string, seconds: number) => Type.Integer({ description, minimum: 1, default: seconds, form: 'duration' });
const flag = (description: string) => Type.Boolean({ description, default: false });
const choice = <const T extends string[]>(description: string, options: readonly [...T], fallback: T[number]) => Type.Enum(options, { description, default: fallback });
const group = <T extends TProperties>(title: string, properties: T, variablePrefix = '') => Object.assign(Type.Object(properties), { title, variablePrefix });

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export const ServerVariables = group(
  'Server',
  {
    CELFORGE_HOST: text('where the API listens: an IP address or a host name', { default: '127.0.0.1', form: 'host' }),
    CELFORGE_PORT: whole('the port the API listens on (`0`: any free port)', 0, 65535, { default: 8331 }),
    CELFORGE_PUBLIC_URL: Type.Optional(
      text('the origin clients address (e.g. `https://studio.example`); signed requests are checked against it, never against the `Host` header', {
        form: 'origin',
        defaultText: '`http://<host>:<port>`',
      }),
    ),
    CELFORGE_DATA_DIR: text('SQLite file, keys, assets', { default: './data' }),
    CELFORGE_CORS_ORIGINS: Type.Array(text('', { form: 'origin' }), { description: 'exact origins allowed cross-origin access', default: [], defaultText: 'empty (no cross-origin access)' }),
    CELFORGE_TRUST_PROXY: Type.Array(text('', { form: 'address' }), { description: 'proxy addresses/CIDRs whose `X-Forwarded-For` is believed', default: [] }),
    CELFORGE_BODY_LIMIT: whole('largest request body in bytes (larger: 413)', 1024, 16 * 1024 * 1024, { default: 65536 }),
    CELFORGE_LOG_LEVEL: choice(
      'pino level; logs are JSON lines with credentials and prompts redacted; a line per request only at `debug` and `trace` (every request is a row of the audit trail)',
      LOG_LEVELS,
      'info',
    ),
    CELFORGE_SHUTDOWN_GRACE: duration('on SIGTERM/SIGINT: how long requests in flight may take before their connections are closed', 10),
  },
);

export const StoreVariables = group(
  'Store',
  {
    DATABASE_URL: Type.Optional(url('the scale-out store', ['postgres:', 'postgresql:'], { defaultText: 'unset (SQLite)', vault: 'database_url' })),
    REDIS_URL: Type.Optional(url('the queue, limits and revocations', ['redis:', 'rediss:'], { defaultText: 'unset (in process)', vault: 'redis_url' })),
    CELFORGE_REDIS_PREFIX: text('prefix of every Redis key and channel Celforge uses (several deployments can share one Redis)', { default: 'celforge:' }),
  },
);

export const AccountVariables = group(
  'Accounts and keys',
  {
    CELFORGE_ACCESS_TOKEN_TTL: duration('access token lifetime', 900),
    CELFORGE_ADMIN_EMAIL: Type.Optional(text('first start only: with the password, creates that admin if no user exists')),
    CELFORGE_ADMIN_PASSWORD: Type.Optional(text('first start only: the first admin’s password')),
    CELFORGE_SIGNING_KEY: Type.Optional(
      text('Ed25519 private key (PEM or JWK) that signs access tokens', { defaultText: 'made in the data dir', vault: 'signing_key' }),
    ),
    CELFORGE_ENCRYPTION_KEY: Type.Optional(
      text('32 random bytes, base64: the master key of secrets at rest', { defaultText: 'made in the data dir (`secrets/`, 0600)', vault: 'encryption_key' }),
    ),
    CELFORGE_URL_SIGNING_KEY: Type.Optional(
      text('at least 32 random bytes, base64: signs asset URLs', { defaultText: 'made in the data dir (`secrets/`, 0600)', vault: 'url_signing_key' }),
    ),
    CELFORGE_METRICS_TOKEN: Type.Optional(text('bearer token that may read `/metrics` (admins always may)', { vault: 'metrics_token' })),
    CELFORGE_AUTH_URL: Type.Optional(url('on an API node that trusts a separate auth service: that service', HTTP)),
    CELFORGE_SERVICE_TOKEN: Type.Optional(text('split mode: shared by the auth service and its API nodes (revocation feed)')),
  },
);

export const VaultVariables = group(
  'Vault',
  {
    CELFORGE_VAULT_ADDR: Type.Optional(url('read secrets from this Vault (KV version 2); the Vault key of each secret is named beside it', HTTP, { defaultText: 'unset (no Vault)' })),
    CELFORGE_VAULT_TOKEN: Type.Optional(text('Vault token (or the AppRole pair below)')),
    CELFORGE_VAULT_ROLE_ID: Type.Optional(text('AppRole role id, with `CELFORGE_VAULT_SECRET_ID`')),
    CELFORGE_VAULT_SECRET_ID: Type.Optional(text('AppRole secret id, with `CELFORGE_VAULT_ROLE_ID`')),
    CELFORGE_VAULT_NAMESPACE: Type.Optional(text('Vault Enterprise namespace')),
    CELFORGE_VAULT_MOUNT: text('KV version 2 mount', { default: 'secret' }),
    CELFORGE_VAULT_PATH: text('entry under the mount that holds the secrets', { default: 'celforge' }),
  },
);

export const RenderingVariables = group(
  'Rendering and jobs',
  {
    CELFORGE_RENDERER: choice('what renders jobs', ['preview', 'comfyui'], 'preview'),
    CELFORGE_COMFYUI_URLS: Type.Array(url('', HTTP), { description: 'ComfyUI base URLs (needed by the `comfyui` renderer)', default: [] }),
    CELFORGE_COMFYUI_CHECKPOINT: Type.Optional(text('checkpoint the ComfyUI workflows load', { defaultText: '`v1-5-pruned-emaonly.safetensors`' })),
    CELFORGE_COMFYUI_MAX_OUTPUT_BYTES: Type.Optional(
      whole('largest result file taken from ComfyUI; a larger one fails its job', 1024, 2 * 1024 ** 3, { defaultText: '`209715200` (200 MiB)' }),
    ),
    CELFORGE_COMFYUI_DEPTH: Type.Optional(
      Type.Array(whole('', 1, 16), { description: 'prompts each ComfyUI backend is kept deep (one running, one waiting); one value, or one per URL', defaultText: '`2`' }),
    ),
    CELFORGE_WORKER_CONCURRENCY: whole('jobs one worker renders at once (preview renderer; a ComfyUI fleet sets its own pace)', 1, 64, { default: 2 }),
    CELFORGE_FLEET_USER_MAX_RUNNING: Type.Optional(
      whole('jobs one user may have running at once (admins set it per user)', 1, 100_000, { defaultText: 'unset (no cap)' }),
    ),
    CELFORGE_FLEET_ROLE_WEIGHTS: Type.Optional(
      Type.Array(text('', { pattern: '^(admin|user)=\\d+(\\.\\d+)?$', mismatch: 'is not role=weight (roles: admin, user)', shape: '`role=weight` pairs' }), {
        description: "fair-share weight of each role's users, e.g. `admin=4,user=1` (0.01–100); a weight an admin sets for a user wins",
        defaultText: 'unset (every role 1)',
      }),
    ),
    CELFORGE_JOB_TIMEOUT: duration('a job running longer than this fails', 600),
    CELFORGE_JOB_LEASE: duration('how long a worker’s claim on a running job lasts without renewal', 30),
    CELFORGE_PREVIEW_STEP_MS: Type.Optional(whole('pause between the preview renderer’s progress steps, in milliseconds', 0, 60_000)),
  },
);

export const LimitVariables = group(
  'Limits',
  {
    CELFORGE_RATE_LIMITS: Type.Optional(
      text('per-policy overrides of the rate limits, e.g. `read=600/60s,signin-account=10/15m`', { defaultText: 'see Abuse control' }),
    ),
    CELFORGE_IMAGE_COST: whole('what one image job costs of the `generation` budget', 1, 1000, { default: 1 }),
    CELFORGE_VIDEO_COST: whole('what one video job costs of the `generation` budget', 1, 1000, { default: 5 }),
    CELFORGE_QUOTA_ACTIVE_JOBS: whole('jobs one user may have queued or running (admins override it per user)', 0, 100_000, { default: 3 }),
    CELFORGE_QUOTA_JOBS_PER_DAY: whole('jobs one user may submit a day (admins override it per user)', 0, 10_000_000, { default: 200 }),
  },
);

export const AuditVariables = group(
  'Audit',
  {
    CELFORGE_AUDIT_RETENTION_DAYS: whole('audit rows older than this many days are pruned (`0` keeps them forever)', 0, 36500, { default: 365 }),
    CELFORGE_AUDIT_CHECKPOINT_FILE: Type.Optional(text('signed audit checkpoints are appended here (they always go to the log)')),
  },
);

export const AssetVariables = group(
  'Assets',
  {
    CELFORGE_S3_BUCKET: Type.Optional(
      text('results in this S3-compatible bucket instead of the data dir (see Assets)', {
        pattern: '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$',
        mismatch: 'is not a bucket name',
        shape: 'bucket name (3–63 of `a-z`, `0-9`, `.`, `-`)',
        defaultText: 'unset (results in the data dir)',
      }),
    ),
    CELFORGE_S3_ENDPOINT: Type.Optional(url('the store’s URL (MinIO, Ceph, R2 …)', HTTP, { defaultText: 'AWS' })),
    CELFORGE_S3_REGION: text('the bucket’s region', { default: 'us-east-1' }),
    CELFORGE_S3_FORCE_PATH_STYLE: flag('`host/bucket/key` addressing instead of `bucket.host/key` (MinIO, Ceph, most self-hosted stores)'),
    CELFORGE_S3_PREFIX: text('prepended to every key, so one bucket can hold several deployments', {
      default: '',
      pattern: '^([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/)?$',
      mismatch: 'is not like "celforge/" (ends with /)',
      shape: 'key prefix ending in `/`, like `celforge/` (letters, digits, `.`, `_`, `-`)',
    }),
    CELFORGE_S3_ACCESS_KEY_ID: Type.Optional(text('S3 access key id, with the secret', { defaultText: 'unset (the AWS default chain)', vault: 's3_access_key_id' })),
    CELFORGE_S3_SECRET_ACCESS_KEY: Type.Optional(
      text('S3 secret access key, with the id', { defaultText: 'unset (the AWS default chain)', vault: 's3_secret_access_key' }),
    ),
    CELFORGE_ASSET_DELIVERY: choice('`stream` (bytes through Celforge, with Range) or `redirect` (302 to a 60-second presigned GET; S3 only)', ['stream', 'redirect'], 'stream'),
    CELFORGE_QUOTA_STORAGE_BYTES: whole('stored result bytes per user (admins override it per user)', 0, 2 ** 50, { default: 5 * 1024 ** 3 }),
    CELFORGE_FAILED_JOB_RETENTION_DAYS: whole('failed and canceled jobs older than this many days are deleted (`0` keeps them)', 0, 36500, { default: 30 }),
    CELFORGE_ASSET_SWEEP_SECONDS: whole('how often each worker sweeps leftovers, orphans and expired jobs, in seconds', 1, 7 * 86400, { default: 3600 }),
  },
);

const PROVIDER_ID = '^[a-z][a-z0-9]{0,31}$';

export const SsoVariables = group(
  'Single sign-on',
  {
    CELFORGE_OIDC_PROVIDERS: Type.Array(text('', { pattern: PROVIDER_ID, mismatch: 'is not a lower-case id like keycloak', shape: 'ids (a lower-case letter, then up to 31 letters or digits)' }), {
      description: 'lower-case provider ids, e.g. `keycloak,google`',
      default: [],
      defaultText: 'unset (no single sign-on)',
    }),
  },
);

/** The settings of one provider: `CELFORGE_OIDC_<ID>_ISSUER` and so on, `<ID>` being its id in upper case. */
export const SsoProviderVariables = group(
  'Single sign-on provider',
  {
    ISSUER: text('the issuer URL (`https://`; `http://` only for localhost)', { form: 'issuer' }),
    CLIENT_ID: text('the client registered at the provider'),
    CLIENT_SECRET: Type.Optional(text('`client_secret_basic`', { vault: 'oidc_<id>_client_secret' })),
    PRIVATE_KEY: Type.Optional(
      text('`private_key_jwt` instead: a private JWK (JSON, its `alg`/`kid` used) or PKCS#8 PEM (RS256); wins over the secret', { vault: 'oidc_<id>_private_key' }),
    ),
    NAME: Type.Optional(text('the button says `Sign in with <name>`', { defaultText: 'the id, capitalised' })),
    SCOPES: Type.Array(Type.String(), {
      description: 'scopes asked for (must include `openid`)',
      default: ['openid', 'email', 'profile'],
      contains: { const: 'openid' },
      mismatch: 'must include openid',
    }),
    ROLE_CLAIM: Type.Optional(text('dotted path of the claim with the role or groups, e.g. `groups` or `realm_access.roles`')),
    ROLE_MAP: Type.Optional(text('`value=role` pairs, e.g. `celforge-admins=admin,celforge-users=user` (needs the role claim)')),
    EMAIL_DOMAINS: Type.Array(Type.String(), { description: 'allowed e-mail domains (the e-mail must not be marked unverified)', default: [], defaultText: 'any' }),
    AUTO_PROVISION: flag('make an account for an unknown subject'),
    MFA_AMR: Type.Array(Type.String(), { description: '`amr` values that count as the admin’s second factor, e.g. `mfa,otp,hwk`', default: [], defaultText: 'unset (never trusted)' }),
    MFA_ACR: Type.Array(Type.String(), { description: '`acr` values that count as the admin’s second factor', default: [], defaultText: 'unset (never trusted)' }),
  },
  'CELFORGE_OIDC_<ID>_',
);

export interface SettingGroup extends TSchema {
  properties: TProperties;
  required?: readonly string[];
  title: string;
  variablePrefix: string;
}

/** The groups of the main configuration table, in README's order. */
export const MAIN_GROUPS: SettingGroup[] = [ServerVariables, StoreVariables, AccountVariables, VaultVariables, RenderingVariables, LimitVariables, AuditVariables, AssetVariables];

/** The groups of the single sign-on table. */
export const SSO_GROUPS: SettingGroup[] = [SsoVariables, SsoProviderVariables];
