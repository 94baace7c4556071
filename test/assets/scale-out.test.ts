import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/db/database.js';
import { createTestStorage, postgresAvailable, type TestStorage } from '../support/dialects.js';
import { startTestS3 } from '../support/s3.js';
import { startServer, type RunningServer } from '../support/server.js';
import { ROOMY_LIMITS_ENV, type Json } from '../production/helpers.js';
import { mintToken, renderedBy, startWorker, type WorkerProcess } from '../production/real-process.js';
import { removeRedisKeys } from '../support/redis.js';

const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const s3 = await startTestS3();

/**
 * An HTTP hop in front of the S3 server for the workers. The first upload of a result (not of a
 * thumbnail) is forwarded only in part and then held: the test kills the uploading worker while
 * its object is half sent. Everything else passes through.
 */
async function startHoldingProxy(target: string) {
  let held = false;
  let seen!: () => void;
  const holding = new Promise<void>((resolve) => (seen = resolve));
  const upstream = new URL(target);
  const server = http.createServer((request, response) => {
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port, method: request.method, path: request.url, headers: request.headers, agent: false },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    forward.on('error', () => response.destroy());
    request.on('close', () => {
      if (!request.complete) forward.destroy();
    });
    if (request.method === 'PUT' && /\/incoming\/assets_[0-9a-f-]{36}-\d+\./.test(request.url ?? '') && !held) {
      let sent = 0;
      const half = Number(request.headers['content-length'] ?? 0) / 2;
      held = true;
      request.on('data', (chunk: Buffer) => {
        if (sent >= half) return;
        // never more than half: a small body may arrive in one chunk, and all of it would complete the upload
        const part = chunk.subarray(0, Math.max(1, Math.ceil(half - sent)));
        sent += part.length;
        forward.write(part);
        if (sent >= half) {
          request.pause();
          seen();
        }
      });
      return;
    }
    request.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    holding,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// Scale-out means PostgreSQL: processes with separate data dirs share nothing else.
describe.skipIf(!postgresAvailable)('scale-out: API node and two workers with separate data dirs, PostgreSQL, Redis and S3', () => {
  const prefix = `cf-test-${randomBytes(6).toString('hex')}:`;
  const settings = s3.settings();
  let proxy: Awaited<ReturnType<typeof startHoldingProxy>>;
  let storage: TestStorage;
  let store: Store;
  let api: RunningServer | undefined;
  const workers: WorkerProcess[] = [];
  const workerDirs: string[] = [];
  let headers: Record<string, string>;

  beforeAll(async () => {
    proxy = await startHoldingProxy(s3.endpoint);
    storage = await createTestStorage('postgres');
    const env = {
      REDIS_URL,
      CELFORGE_REDIS_PREFIX: prefix,
      CELFORGE_JOB_LEASE: '2s',
      CELFORGE_PREVIEW_STEP_MS: '5',
      ...ROOMY_LIMITS_ENV,
      ...s3.env(settings),
    };
    api = await startServer(storage, { args: ['serve', '--only', 'api'], env });
    for (let i = 0; i < 2; i++) workerDirs.push(mkdtempSync(path.join(tmpdir(), 'celforge-worker-')));
    workers.push(
      ...(await Promise.all(
        workerDirs.map((dataDir) =>
          startWorker({ dataDir, databaseUrl: storage.databaseUrl }, { ...env, CELFORGE_S3_ENDPOINT: proxy.endpoint, CELFORGE_LOG_LEVEL: 'info' }),
        ),
      )),
    );
    store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
    headers = { authorization: `Bearer ${await mintToken(store, storage)}`, 'content-type': 'application/json' };
  }, 120_000);

  afterAll(async () => {
    await Promise.all([api?.stop('SIGKILL'), ...workers.map((w) => w.stop('SIGKILL'))]);
    await store?.close();
    await storage?.drop();
    await proxy?.close();
    for (const dir of workerDirs) rmSync(dir, { recursive: true, force: true });
    await removeRedisKeys(REDIS_URL, prefix);
  });

  it('kill -9 of the worker mid-upload leaves no visible object; the job succeeds once on the other; the API node serves it whole and by range', { timeout: 150_000 }, async () => {
    const submitted = await fetch(`${api!.url}/api/anime/generate`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ prompt: 'across machines', type: 'video', width: 256, height: 256, frames: 24 }),
    });
    expect(submitted.status).toBe(202);
    const id = ((await submitted.json()) as Json).job_id as string;

    await proxy.holding;
    const row = await store.db.selectFrom('jobs').select(['status', 'locked_by']).where('id', '=', id).executeTakeFirstOrThrow();
    expect(row.status).toBe('running');
    const victim = workers.find((w) => w.id === row.locked_by)!;
    const survivor = workers.find((w) => w !== victim)!;
    expect(await victim.stop('SIGKILL')).toBeNull();
    // half a body reached the S3 server (s3rver keeps it), under incoming/ and never under the result's key
    const afterKill = await s3.keys(settings);
    expect(afterKill.filter((key) => key.startsWith('assets/'))).toEqual([]);
    expect(afterKill.filter((key) => key.startsWith('incoming/'))).toHaveLength(1);

    await expect
      .poll(async () => (await store.db.selectFrom('jobs').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status, { timeout: 90_000, interval: 200 })
      .toBe('succeeded');
    const job = await store.db.selectFrom('jobs').select(['attempts']).where('id', '=', id).executeTakeFirstOrThrow();
    expect(job.attempts).toBe(2);
    const rows = await store.db.selectFrom('assets').selectAll().where('job_id', '=', id).orderBy('position').execute();
    // one set of results: the animation, and with ffmpeg installed its MP4 first
    expect(rows.map((row) => row.position)).toEqual(rows.map((_, position) => position));
    expect([1, 2]).toContain(rows.length);
    await expect.poll(() => renderedBy(survivor.output()).filter((rendered) => rendered === id).length, { timeout: 10_000 }).toBe(1);
    expect(renderedBy(victim.output())).not.toContain(id);
    const keys = await s3.keys(settings);
    expect(keys.filter((key) => !key.startsWith('incoming/')).sort()).toEqual(
      rows.flatMap((row) => [`assets/${row.storage_key}`, `thumbnails/${id}-${row.position}.webp`]).sort(),
    );
    // the killed writer's leftover is the sweep's to remove
    expect(keys.filter((key) => key.startsWith('incoming/'))).toEqual(afterKill.filter((key) => key.startsWith('incoming/')));
    // the workers' own data dirs hold no result: the bucket does
    for (const dir of workerDirs) expect(existsSync(path.join(dir, 'assets'))).toBe(false);

    const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    const object = await client.send(new GetObjectCommand({ Bucket: settings.bucket, Key: `${settings.prefix}assets/${rows[0]!.storage_key}` }));
    const inBucket = Buffer.from(await object.Body!.transformToByteArray());
    client.destroy();
    expect(inBucket.length).toBe(rows[0]!.byte_size);

    const view = (await (await fetch(`${api!.url}/api/anime/jobs/${id}`, { headers })).json()) as Json;
    const whole = await fetch(`${api!.url}${view.assets[0].url}`);
    expect(whole.status).toBe(200);
    expect(Buffer.from(await whole.arrayBuffer()).equals(inBucket)).toBe(true);
    const ranged = await fetch(`${api!.url}${view.assets[0].url}`, { headers: { range: 'bytes=100-1123' } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe(`bytes 100-1123/${inBucket.length}`);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(inBucket.subarray(100, 1124))).toBe(true);
    expect((await fetch(`${api!.url}${view.assets[0].thumbnail_url}`)).headers.get('content-type')).toBe('image/webp');
  });
});
