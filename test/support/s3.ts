import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';
import { afterAll } from 'vitest';
import type { S3Settings } from '../../src/config/assets.js';
import { testConfig, type Config } from '../../src/config/config.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

export type AssetBackend = 'disk' | 's3';
export const ASSET_BACKENDS: AssetBackend[] = ['disk', 's3'];

/** s3rver's built-in account: it checks that the access key exists, not the SigV4 signature. */
const ACCESS_KEY = 'S3RVER';
const BUCKET = 'celforge-test';

export interface TestS3 {
  endpoint: string;
  /** settings for one suite: the shared bucket under a prefix of its own */
  settings(): S3Settings;
  /** the keys under a suite's prefix, without the prefix */
  keys(settings: S3Settings): Promise<string[]>;
  /** the environment a real process needs to use these settings */
  env(settings: S3Settings): Record<string, string>;
  close(): Promise<void>;
}

/**
 * A real S3 protocol server (s3rver, in this process, on a loopback port) with one bucket; closed
 * after the test file. Start it at the top of a test file: `const s3 = await startTestS3();`.
 */
export async function startTestS3(): Promise<TestS3> {
  const directory = mkdtempSync(path.join(tmpdir(), 'celforge-s3-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: BUCKET }] });
  keepEmptyDirectories(server);
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: ACCESS_KEY } });
  const handle: TestS3 = {
    endpoint,
    settings: () => ({
      endpoint,
      bucket: BUCKET,
      region: 'us-east-1',
      accessKeyId: ACCESS_KEY,
      secretAccessKey: ACCESS_KEY,
      forcePathStyle: true,
      prefix: `t-${randomBytes(6).toString('hex')}/`,
    }),
    async keys(settings) {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: settings.prefix, ContinuationToken: token }));
        for (const item of page.Contents ?? []) keys.push(item.Key!.slice(settings.prefix.length));
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return keys.sort();
    },
    env: (settings) => ({
      CELFORGE_S3_ENDPOINT: endpoint,
      CELFORGE_S3_BUCKET: BUCKET,
      CELFORGE_S3_REGION: settings.region,
      CELFORGE_S3_ACCESS_KEY_ID: ACCESS_KEY,
      CELFORGE_S3_SECRET_ACCESS_KEY: ACCESS_KEY,
      CELFORGE_S3_FORCE_PATH_STYLE: 'true',
      CELFORGE_S3_PREFIX: settings.prefix,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    }),
    async close() {
      client.destroy();
      // keep-alive sockets of clients in other processes would hold close() open
      (server as unknown as { httpServer?: { closeAllConnections(): void } }).httpServer?.closeAllConnections();
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
  afterAll(() => handle.close());
  return handle;
}

interface S3rverFilesystemStore {
  getResourcePath(bucket: string, key: string, resource: string): string;
  deleteObject(bucket: string, key: string): Promise<void>;
}

/**
 * s3rver removes the directories a delete leaves empty. A put into the same directory that has
 * created it but not yet opened its file then fails in a write stream nobody listens to, which
 * crashes the process. Empty directories never show in s3rver's listings, so a delete here
 * removes the object's files only.
 */
function keepEmptyDirectories(server: S3rver): void {
  const store = (server as unknown as { store: S3rverFilesystemStore }).store;
  store.deleteObject = async (bucket, key) => {
    await Promise.all(['object', 'object.md5', 'metadata.json'].map((resource) => rm(store.getResourcePath(bucket, key, resource), { force: true })));
  };
}

/** The `assets` part of a config for a back end: the data dir, or a fresh prefix in the test bucket. */
export function assetSettingsFor(backend: AssetBackend, s3: TestS3, extra: Partial<Config['assets']> = {}): Config['assets'] {
  const defaults = testConfig().assets;
  return backend === 's3' ? { ...defaults, backend: 's3', s3: s3.settings(), ...extra } : { ...defaults, ...extra };
}
