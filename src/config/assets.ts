import { readSettings } from './read-settings.js';
import { AssetVariables } from './settings.js';
import { ConfigError, type Env } from './variables.js';

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

/**
 * The asset settings of `AssetVariables`; S3 is used when `CELFORGE_S3_BUCKET` is set, and
 * its other settings only then.
 */
export function parseAssetSettings(env: Env): AssetSettings {
  const assets = readSettings(env, AssetVariables);
  const { CELFORGE_S3_ACCESS_KEY_ID: accessKeyId, CELFORGE_S3_SECRET_ACCESS_KEY: secretAccessKey } = assets;
  if (assets.CELFORGE_S3_BUCKET && Boolean(accessKeyId) !== Boolean(secretAccessKey)) {
    throw new ConfigError('CELFORGE_S3_ACCESS_KEY_ID and CELFORGE_S3_SECRET_ACCESS_KEY go together (or neither: the AWS default chain)');
  }
  const s3: S3Settings | undefined = assets.CELFORGE_S3_BUCKET
    ? {
        endpoint: assets.CELFORGE_S3_ENDPOINT,
        bucket: assets.CELFORGE_S3_BUCKET,
        region: assets.CELFORGE_S3_REGION,
        accessKeyId,
        secretAccessKey,
        forcePathStyle: assets.CELFORGE_S3_FORCE_PATH_STYLE,
        prefix: assets.CELFORGE_S3_PREFIX,
      }
    : undefined;
  const delivery = assets.CELFORGE_ASSET_DELIVERY;
  if (delivery === 'redirect' && !s3) throw new ConfigError('CELFORGE_ASSET_DELIVERY=redirect needs an S3 store (CELFORGE_S3_BUCKET)');
  return {
    backend: s3 ? 's3' : 'disk',
    s3,
    delivery,
    storageQuotaBytes: assets.CELFORGE_QUOTA_STORAGE_BYTES,
    failedRetentionDays: assets.CELFORGE_FAILED_JOB_RETENTION_DAYS,
    sweepIntervalSeconds: assets.CELFORGE_ASSET_SWEEP_SECONDS,
  };
}
