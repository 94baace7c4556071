import { ConfigError, readVariable, type Env } from './config.js';

export interface S3Settings {
  endpoint?: string;
  bucket: string;
  region: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** `http://host/bucket/key` instead of `http://bucket.host/key` (MinIO, Ceph, most self-hosted stores) */
  forcePathStyle: boolean;
  /** prepended to every key, so one bucket can hold several deployments */
  prefix: string;
}

export interface AssetSettings {
  /** `disk`: files in the data dir; `s3`: an S3-compatible bucket (CELFORGE_S3_BUCKET set) */
  backend: 'disk' | 's3';
  s3?: S3Settings;
  /** `stream`: bytes pass through Celforge; `redirect`: a short-lived presigned GET (S3 only) */
  delivery: 'stream' | 'redirect';
  /** per-user default of stored result bytes; admins override it per user */
  storageQuotaBytes: number;
  /** failed and canceled jobs older than this many days are deleted; 0 keeps them */
  failedRetentionDays: number;
  /** how often a worker sweeps orphans, stale temporary files and expired jobs */
  sweepIntervalSeconds: number;
}

function integer(env: Env, name: string, fallback: number, max: number): number {
  const text = readVariable(env, name);
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text.trim()) || Number(text) > max) throw new ConfigError(`${name}: "${text}" is not a whole number up to ${max}`);
  return Number(text);
}

function choice<T extends string>(env: Env, name: string, options: readonly T[], fallback: T): T {
  const text = readVariable(env, name) ?? fallback;
  if (!options.includes(text as T)) throw new ConfigError(`${name}: "${text}" is not one of ${options.join(', ')}`);
  return text as T;
}

function s3Settings(env: Env): S3Settings | undefined {
  const bucket = readVariable(env, 'CELFORGE_S3_BUCKET');
  if (!bucket) return undefined;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new ConfigError(`CELFORGE_S3_BUCKET: "${bucket}" is not a bucket name`);
  const endpoint = readVariable(env, 'CELFORGE_S3_ENDPOINT');
  if (endpoint !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {
      // reported below
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new ConfigError('CELFORGE_S3_ENDPOINT: not an http(s) URL');
  }
  const accessKeyId = readVariable(env, 'CELFORGE_S3_ACCESS_KEY_ID');
  const secretAccessKey = readVariable(env, 'CELFORGE_S3_SECRET_ACCESS_KEY');
  if (Boolean(accessKeyId) !== Boolean(secretAccessKey)) {
    throw new ConfigError('CELFORGE_S3_ACCESS_KEY_ID and CELFORGE_S3_SECRET_ACCESS_KEY go together (or neither: the AWS default chain)');
  }
  const prefix = readVariable(env, 'CELFORGE_S3_PREFIX') ?? '';
  if (prefix && !/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\/$/.test(prefix)) throw new ConfigError('CELFORGE_S3_PREFIX: must be like "celforge/" (ends with /)');
  return {
    endpoint,
    bucket,
    region: readVariable(env, 'CELFORGE_S3_REGION') ?? 'us-east-1',
    accessKeyId,
    secretAccessKey,
    forcePathStyle: choice(env, 'CELFORGE_S3_FORCE_PATH_STYLE', ['true', 'false'], 'false') === 'true',
    prefix,
  };
}

export function parseAssetSettings(env: Env): AssetSettings {
  const s3 = s3Settings(env);
  const delivery = choice(env, 'CELFORGE_ASSET_DELIVERY', ['stream', 'redirect'] as const, 'stream');
  if (delivery === 'redirect' && !s3) throw new ConfigError('CELFORGE_ASSET_DELIVERY=redirect needs an S3 store (CELFORGE_S3_BUCKET)');
  return {
    backend: s3 ? 's3' : 'disk',
    s3,
    delivery,
    storageQuotaBytes: integer(env, 'CELFORGE_QUOTA_STORAGE_BYTES', 5 * 1024 ** 3, 2 ** 50),
    failedRetentionDays: integer(env, 'CELFORGE_FAILED_JOB_RETENTION_DAYS', 30, 36500),
    sweepIntervalSeconds: Math.max(1, integer(env, 'CELFORGE_ASSET_SWEEP_SECONDS', 3600, 7 * 86400)),
  };
}
