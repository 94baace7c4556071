import { randomBytes } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { migrate, openStore, type Store } from '../../src/db/database.js';
import { EventBus } from '../../src/db/event-bus.js';
import { BullMQQueue } from '../../src/production/bullmq-queue.js';
import { createTestStorage, describePostgres, type TestStorage } from '../support/dialects.js';
import { insertJob } from '../support/jobs.js';
import { startServer, type RunningServer } from '../support/server.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { ROOMY_LIMITS_ENV } from '../production/helpers.js';
import { mintToken, startWorker, type WorkerProcess } from '../production/real-process.js';
import { removeRedisKeys } from '../support/redis.js';

type Json = Record<string, any>;
const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describePostgres('a short PostgreSQL outage in scale-out', () => {
  const prefix = `cf-test-${randomBytes(6).toString('hex')}:`;
  const env = { REDIS_URL, CELFORGE_REDIS_PREFIX: prefix, CELFORGE_JOB_LEASE: '2s', CELFORGE_PREVIEW_STEP_MS: '5', ...ROOMY_LIMITS_ENV };
  let storage: TestStorage;
  let store: Store;
  let proxy: TcpProxy;
  let api: RunningServer | undefined;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    storage = await createTestStorage('postgres');
    const target = new URL(storage.databaseUrl!);
    proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
    // The API reaches PostgreSQL directly (jobs keep being accepted); the workers only through the proxy.
    api = await startServer(storage, { args: ['serve', '--only', 'api'], env });
    const behindProxy = { dataDir: storage.dataDir, databaseUrl: proxy.url(storage.databaseUrl!) };
    for (let i = 0; i < 2; i++) workers.push(await startWorker(behindProxy, { ...env, CELFORGE_LOG_LEVEL: 'info' }));
    store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
  }, 90_000);

  afterAll(async () => {
    await Promise.all([api?.stop('SIGKILL'), ...workers.map((w) => w.stop('SIGKILL'))]);
    await proxy?.close();
    await store?.close();
    await storage.drop();
    await removeRedisKeys(REDIS_URL, prefix);
  });

  it('jobs accepted while the workers cannot reach the store all run once it is back; the failed claims are logged once', { timeout: 90_000 }, async () => {
    const headers = { authorization: `Bearer ${await mintToken(store, storage)}`, 'content-type': 'application/json' };
    proxy.cut();
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      const body = { prompt: `outage ${i}`, type: 'image', width: 64, height: 64, steps: 3 };
      const response = await fetch(`${api!.url}/api/anime/generate`, { method: 'POST', headers, body: JSON.stringify(body) });
      expect(response.status).toBe(202);
      ids.push(((await response.json()) as Json).job_id);
    }
    // long enough for every announcement to be tried and to fail, more than once
    await new Promise((resolve) => setTimeout(resolve, 4000));
    const statuses = async () => store.db.selectFrom('jobs').select(['id', 'status', 'attempts']).where('id', 'in', ids).execute();
    expect((await statuses()).every((job) => job.status === 'queued')).toBe(true);
    proxy.restore();

    await expect.poll(async () => (await statuses()).filter((job) => job.status === 'succeeded').length, { timeout: 60_000, interval: 200 }).toBe(ids.length);
    expect((await statuses()).every((job) => job.attempts === 1)).toBe(true);
    const assets = await store.db.selectFrom('assets').select('job_id').where('job_id', 'in', ids).execute();
    expect(assets.map((a) => a.job_id).sort()).toEqual([...ids].sort());
    for (const worker of workers) {
      expect(worker.process.exitCode).toBeNull();
      // one line when the outage begins (the claims, the lease sweep and the re-announcement all fail), one when it ends
      const lines = (text: string) => worker.output().split('\n').filter((line) => line.includes(text));
      expect(lines('store unavailable')).toHaveLength(1);
      await expect.poll(() => lines('store available again').length, { timeout: 15_000 }).toBe(1);
    }
    const failures = workers.map((w) => w.output()).join('\n').split('\n').filter((line) => line.includes('could not claim a job'));
    expect(failures).toEqual([]);
  });
});

describePostgres('re-announcing queued jobs', () => {
  const prefix = `cf-test-${randomBytes(6).toString('hex')}:`;
  let storage: TestStorage;
  let store: Store;

  beforeAll(async () => {
    storage = await createTestStorage('postgres');
    store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
    await migrate(store);
  });
  afterAll(async () => {
    await store?.close();
    await storage.drop();
    await removeRedisKeys(REDIS_URL, prefix);
  });

  it('revives a queued job whose announcement ended in the failed set (its id would be ignored as a duplicate)', { timeout: 30_000 }, async () => {
    const token = await mintToken(store, storage);
    const userId = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub as string;
    const id = await insertJob(store.db, { user_id: userId, prompt: 'revive me', created_at: new Date().toISOString() });
    const bus = EventBus.open(REDIS_URL, prefix);
    const queue = new BullMQQueue(store, { url: REDIS_URL, prefix, bus });
    const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const bull = new Queue('jobs', { connection, prefix: prefix.replace(/:$/, '') });
    try {
      await queue.enqueue((await store.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirstOrThrow()));
      // what a claim that failed on every try leaves behind
      const failing = new Worker(
        'jobs',
        async (job) => {
          job.discard();
          throw new Error('Connection terminated unexpectedly');
        },
        { connection, prefix: prefix.replace(/:$/, '') },
      );
      await expect.poll(() => bull.getJobState(`${id}-0`), { timeout: 10_000 }).toBe('failed');
      await failing.close();

      expect(await queue.reconcile()).toBe(1);
      expect(await bull.getJobState(`${id}-0`)).toBe('waiting');
      // nothing more to revive: a live announcement is left alone
      expect(await queue.reconcile()).toBe(0);
    } finally {
      await bull.close();
      await queue.close();
      bus.close();
      connection.disconnect();
    }
  });
});
