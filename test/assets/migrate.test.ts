import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { signIn, useTestApp } from '../support/app.js';
import { runCli } from '../support/cli.js';
import { assetSettingsFor, startTestS3 } from '../support/s3.js';
import { generate, ROOMY_LIMITS, waitFor, type Json } from '../production/helpers.js';

const s3 = await startTestS3();

describe('celforge assets migrate --to s3', () => {
  const t = useTestApp('sqlite', { limits: ROOMY_LIMITS, previewStepMs: 0 });

  it('copies every result and thumbnail, verified; a second run copies only what is missing or differs; the app then serves from S3', async () => {
    const user = await signIn(t.app);
    const jobs: Json[] = [];
    for (const type of ['image', 'video', 'image'] as const) {
      const submitted = (await generate(t.app, user.authorization, { prompt: `to move ${type}`, type, width: 64, height: 64, ...(type === 'video' && { frames: 4 }) })).json() as Json;
      jobs.push(await waitFor(t.app, user.authorization, submitted.job_id, ['succeeded']));
    }
    const onDisk = ['assets', 'thumbnails'].flatMap((folder) => readdirSync(path.join(t.config.dataDir, folder)).map((name) => `${folder}/${name}`)).sort();
    // every result has its thumbnail (a video job keeps an MP4 and the animation where ffmpeg is installed)
    const results = jobs.reduce((count, job) => count + (job.assets as Json[]).length, 0);
    expect(onDisk).toHaveLength(2 * results);

    const settings = s3.settings();
    const env = s3.env(settings);
    const usage = await runCli(['assets', 'migrate', '--to', 'disk'], t.config, { env });
    expect(usage.code).toBe(2);
    const first = await runCli(['assets', 'migrate', '--to', 's3'], t.config, { env });
    expect(first.stderr).toBe('');
    expect(first.stdout).toMatch(new RegExp(`^copied ${onDisk.length} \\(\\d+ bytes\\), already there and verified 0, failed 0\n$`));
    expect(first.code).toBe(0);
    expect(await s3.keys(settings)).toEqual(onDisk);

    // an interrupted or damaged earlier copy: one object missing, one with other bytes of the same size
    const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    const damaged = `assets/${jobs[0]!.job_id}-0.png`;
    const size = jobs[0]!.assets[0].byte_size as number;
    await client.send(new PutObjectCommand({ Bucket: settings.bucket, Key: settings.prefix + damaged, Body: Buffer.alloc(size, 1) }));
    const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
    await client.send(new DeleteObjectCommand({ Bucket: settings.bucket, Key: `${settings.prefix}thumbnails/${jobs[1]!.job_id}-0.webp` }));
    client.destroy();
    const second = await runCli(['assets', 'migrate', '--to', 's3'], t.config, { env });
    expect(second.stdout).toMatch(new RegExp(`^copied 2 \\(\\d+ bytes\\), already there and verified ${onDisk.length - 2}, failed 0\n$`));
    expect(await s3.keys(settings)).toEqual(onDisk);

    const onS3 = await buildApp({ ...t.config, assets: assetSettingsFor('s3', s3, { s3: settings }) }, { worker: false });
    try {
      for (const job of jobs) {
        const [fromDisk, fromS3] = await Promise.all([t.app.inject({ url: job.assets[0].url }), onS3.inject({ url: job.assets[0].url })]);
        expect(fromS3.statusCode).toBe(200);
        expect(fromS3.rawPayload.equals(fromDisk.rawPayload)).toBe(true);
        expect((await onS3.inject({ url: job.assets[0].thumbnail_url })).statusCode).toBe(200);
      }
    } finally {
      await onS3.close();
    }
  });

  it('without an S3 bucket configured it stops with one line naming what to set', async () => {
    const result = await runCli(['assets', 'migrate', '--to', 's3'], t.config);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('celforge: assets migrate --to s3: set CELFORGE_S3_BUCKET (and CELFORGE_S3_ENDPOINT, credentials) first\n');
  });
});
