import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/db/database.js';
import { createTestStorage, describePostgres, type TestStorage } from '../support/dialects.js';
import { startServer, type RunningServer } from '../support/server.js';
import { ROOMY_LIMITS_ENV } from '../production/helpers.js';
import { mintToken, startWorker, type WorkerProcess } from '../production/real-process.js';
import { removeRedisKeys } from '../support/redis.js';

type Json = Record<string, any>;
const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Backends of this database waiting for a lock, other than the holder's. */
async function waiting(admin: pg.Client): Promise<number> {
  const { rows } = await admin.query(
    "select count(*)::int as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock'",
  );
  return rows[0].n as number;
}

describePostgres('a PostgreSQL connection dropped inside a transaction', () => {
  const prefix = `cf-test-${randomBytes(6).toString('hex')}:`;
  const env = {
    REDIS_URL,
    CELFORGE_REDIS_PREFIX: prefix,
    CELFORGE_JOB_LEASE: '3s',
    CELFORGE_PREVIEW_STEP_MS: '10',
    ...ROOMY_LIMITS_ENV,
  };
  let storage: TestStorage;
  let store: Store;
  let api: RunningServer | undefined;
  let worker: WorkerProcess | undefined;
  let admin: pg.Client;

  beforeAll(async () => {
    storage = await createTestStorage('postgres');
    api = await startServer(storage, { args: ['serve', '--only', 'api'], env });
    worker = await startWorker(storage, { ...env, CELFORGE_LOG_LEVEL: 'warn' });
    store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
    admin = new pg.Client({ connectionString: storage.databaseUrl });
    await admin.connect();
  }, 60_000);

  afterAll(async () => {
    await Promise.all([api?.stop('SIGKILL'), worker?.stop('SIGKILL')]);
    await admin?.end().catch(() => {});
    await store?.close();
    await storage.drop();
    await removeRedisKeys(REDIS_URL, prefix);
  });

  it('fails the statement, not the process: the API and the worker stay up and every accepted job succeeds once', { timeout: 90_000 }, async () => {
    const headers = { authorization: `Bearer ${await mintToken(store, storage)}`, 'content-type': 'application/json' };
    // Hold the locks the audit writer (API) and the result save (worker) need, inside a transaction.
    await admin.query('begin');
    // EXCLUSIVE, not ACCESS EXCLUSIVE: reads (a submission's storage-quota sum) go on, writes wait
    await admin.query('lock table audit_head, assets in exclusive mode');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`${api!.url}/api/anime/generate`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ prompt: `dropped ${i}`, type: 'image', width: 64, height: 64, steps: 5 }),
      });
      expect(response.status).toBe(202);
      ids.push(((await response.json()) as Json).job_id);
    }
    // the audit append of the API and the save of the worker both wait for the lock
    await expect.poll(() => waiting(admin), { timeout: 20_000, interval: 100 }).toBeGreaterThanOrEqual(2);

    const { rows } = await admin.query(
      'select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()',
    );
    expect(rows.length).toBeGreaterThanOrEqual(2);
    await admin.query('commit');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(api!.process.exitCode, api!.output()).toBeNull();
    expect(worker!.process.exitCode, worker!.output()).toBeNull();

    // the service goes on: ready, new requests answered, every accepted job succeeds exactly once
    await expect.poll(async () => (await fetch(`${api!.url}/api/anime/ready`)).status, { timeout: 20_000 }).toBe(200);
    const response = await fetch(`${api!.url}/api/anime/jobs/${ids[0]}`, { headers });
    expect(response.status).toBe(200);
    const ended = async () =>
      store.db.selectFrom('jobs').select(['id', 'status', 'error']).where('id', 'in', ids).where('status', 'not in', ['queued', 'running']).execute();
    await expect.poll(async () => (await ended()).length, { timeout: 60_000, interval: 200 }).toBe(ids.length);
    // a save that hit the dropped connection was tried again, not failed as the renderer's fault
    expect((await ended()).map((job) => job.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    const assets = await store.db.selectFrom('assets').select('job_id').where('job_id', 'in', ids).execute();
    expect(assets.map((a) => a.job_id).sort()).toEqual([...ids].sort());
  });
});
