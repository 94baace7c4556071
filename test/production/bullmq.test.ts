import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/db/database.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';
import { startServer, type RunningServer } from '../support/server.js';
import { ROOMY_LIMITS_ENV } from './helpers.js';
import { mintToken, renderedBy, startWorker, type WorkerProcess } from './real-process.js';
import { removeRedisKeys } from '../support/redis.js';

type Json = Record<string, any>;

const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describeEachDialect('scale-out: BullMQ with celforge worker processes', (dialect) => {
  const prefix = `cf-test-${randomBytes(6).toString('hex')}:`;
  const env = {
    REDIS_URL,
    CELFORGE_REDIS_PREFIX: prefix,
    CELFORGE_JOB_LEASE: '2s',
    CELFORGE_WORKER_CONCURRENCY: '2',
    CELFORGE_PREVIEW_STEP_MS: '20',
    ...ROOMY_LIMITS_ENV,
  };
  let storage: TestStorage;
  let store: Store;
  let api: RunningServer | undefined;
  const workers: WorkerProcess[] = [];
  let headers: Record<string, string>;

  beforeAll(async () => {
    storage = await createTestStorage(dialect);
    // an API node without a worker: every job must travel through Redis to the worker processes
    api = await startServer(storage, { args: ['serve', '--only', 'api'], env });
    workers.push(...(await Promise.all([startWorker(storage, { ...env, CELFORGE_LOG_LEVEL: 'info' }), startWorker(storage, { ...env, CELFORGE_LOG_LEVEL: 'info' })])));
    store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
    headers = { authorization: `Bearer ${await mintToken(store, storage)}`, 'content-type': 'application/json' };
  }, 60_000);

  afterAll(async () => {
    await Promise.all([api?.stop('SIGKILL'), ...workers.map((w) => w.stop('SIGKILL'))]);
    await store?.close();
    await storage.drop();
    await removeRedisKeys(REDIS_URL, prefix);
  });

  async function submit(body: Json): Promise<string> {
    const response = await fetch(`${api!.url}/api/anime/generate`, { method: 'POST', headers, body: JSON.stringify(body) });
    expect(response.status).toBe(202);
    return ((await response.json()) as Json).job_id;
  }

  async function statuses(ids: string[]) {
    return store.db.selectFrom('jobs').select(['id', 'status', 'attempts', 'locked_by']).where('id', 'in', ids).execute();
  }

  async function allEnded(ids: string[], timeout = 60_000) {
    await expect
      .poll(async () => (await statuses(ids)).filter((j) => ['succeeded', 'failed', 'canceled'].includes(j.status)).length, { timeout, interval: 100 })
      .toBe(ids.length);
    return statuses(ids);
  }

  it('two worker processes do every job exactly once', { timeout: 90_000 }, async () => {
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(await submit({ prompt: `scale ${i}`, type: 'image', width: 64, height: 64, steps: 10 }));
    const done = await allEnded(ids);
    expect(done.every((j) => j.status === 'succeeded' && j.attempts === 1)).toBe(true);
    const assets = await store.db.selectFrom('assets').select('job_id').where('job_id', 'in', ids).execute();
    expect(assets).toHaveLength(ids.length);
    // the log line follows the commit: wait for both logs to catch up
    const logged = () => workers.flatMap((w) => renderedBy(w.output()).filter((id) => ids.includes(id))).length;
    await expect.poll(logged, { timeout: 10_000 }).toBe(ids.length);
    const [a, b] = workers.map((w) => renderedBy(w.output()).filter((id) => ids.includes(id)));
    expect([...a!, ...b!].sort()).toEqual([...ids].sort());
    expect(a!.length).toBeGreaterThan(0);
    expect(b!.length).toBeGreaterThan(0);
  });

  it('the API streams events of a job rendered in another process', { timeout: 60_000 }, async () => {
    const id = await submit({ prompt: 'stream across processes', type: 'video', width: 64, height: 64, frames: 40 });
    const response = await fetch(`${api!.url}/api/anime/jobs/${id}/events`, { headers });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await response.text();
    expect(text).toContain('event: progress');
    expect(text.trim().split('\n\n').at(-1)).toMatch(/"status":"succeeded"/);
  });

  it('a cancel through the API stops the render in a worker process', { timeout: 60_000 }, async () => {
    const id = await submit({ prompt: 'cancel across processes', type: 'image', width: 64, height: 64, steps: 100 });
    await expect.poll(async () => (await statuses([id]))[0]!.status, { timeout: 20_000, interval: 50 }).toBe('running');
    const response = await fetch(`${api!.url}/api/anime/jobs/${id}/cancel`, { method: 'POST', headers: { authorization: headers.authorization! } });
    expect(((await response.json()) as Json).status).toBe('canceled');
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect((await statuses([id]))[0]!.status).toBe('canceled');
    expect(await store.db.selectFrom('assets').select('id').where('job_id', '=', id).execute()).toEqual([]);
  });

  it("a killed worker's jobs finish on the other worker", { timeout: 120_000 }, async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await submit({ prompt: `survive ${i}`, type: 'image', width: 64, height: 64, steps: 100 }));
    const [victim, survivor] = workers as [WorkerProcess, WorkerProcess];
    await expect
      .poll(async () => (await statuses(ids)).filter((j) => j.status === 'running' && j.locked_by === victim.id).length, { timeout: 30_000, interval: 50 })
      .toBeGreaterThan(0);
    const orphaned = (await statuses(ids)).filter((j) => j.status === 'running' && j.locked_by === victim.id).map((j) => j.id);
    expect(await victim.stop('SIGKILL')).toBeNull();
    const done = await allEnded(ids, 90_000);
    expect(done.every((j) => j.status === 'succeeded')).toBe(true);
    const assets = await store.db.selectFrom('assets').select('job_id').where('job_id', 'in', ids).execute();
    expect(assets).toHaveLength(ids.length);
    const rescuedAll = () => orphaned.every((id) => renderedBy(survivor.output()).includes(id));
    await expect.poll(rescuedAll, { timeout: 10_000 }).toBe(true);
    const rescued = renderedBy(survivor.output());
    for (const id of orphaned) {
      expect(rescued).toContain(id);
      expect(done.find((j) => j.id === id)!.attempts).toBe(2);
    }
  });
});
