import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openStore, type Store } from '../../../src/db/database.js';
import { startComfyUIDouble, type ComfyUIDouble } from '../../doubles/comfyui.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../../support/dialects.js';
import { removeRedisKeys } from '../../support/redis.js';
import { startServer, type RunningServer } from '../../support/server.js';
import { ROOMY_LIMITS_ENV } from '../helpers.js';
import { mintToken, renderedBy, startWorker, type WorkerProcess } from '../real-process.js';

type Json = Record<string, any>;

const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const DEPTH = 2;
const JOBS = 24;

/**
 * Two `celforge worker` processes schedule on the same two ComfyUI backends: each backend must
 * never hold more than its depth of prompts from both together.
 */
describeEachDialect('scale-out: a backend is kept its depth deep across worker processes', (dialect) => {
  const prefix = `cf-test-${randomBytes(6).toString('hex')}:`;
  let storage: TestStorage;
  let store: Store;
  let api: RunningServer | undefined;
  const workers: WorkerProcess[] = [];
  const doubles: ComfyUIDouble[] = [];
  let headers: Record<string, string>;

  beforeAll(async () => {
    doubles.push(await startComfyUIDouble(), await startComfyUIDouble());
    for (const d of doubles) {
      d.renderMs = 80;
      d.viewDelayMs = 20;
    }
    const env = {
      REDIS_URL,
      CELFORGE_REDIS_PREFIX: prefix,
      CELFORGE_JOB_LEASE: '2s',
      CELFORGE_WORKER_CONCURRENCY: '4',
      CELFORGE_RENDERER: 'comfyui',
      CELFORGE_COMFYUI_URLS: doubles.map((d) => d.url).join(','),
      CELFORGE_COMFYUI_DEPTH: String(DEPTH),
      ...ROOMY_LIMITS_ENV,
    };
    storage = await createTestStorage(dialect);
    api = await startServer(storage, { args: ['serve', '--only', 'api'], env });
    workers.push(...(await Promise.all([startWorker(storage, { ...env, CELFORGE_LOG_LEVEL: 'info' }), startWorker(storage, { ...env, CELFORGE_LOG_LEVEL: 'info' })])));
    store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
    headers = { authorization: `Bearer ${await mintToken(store, storage)}`, 'content-type': 'application/json' };
  }, 90_000);

  afterAll(async () => {
    await Promise.all([api?.stop('SIGKILL'), ...workers.map((w) => w.stop('SIGKILL'))]);
    await Promise.all(doubles.map((d) => d.close()));
    await store?.close();
    await storage?.drop();
    await removeRedisKeys(REDIS_URL, prefix);
  });

  it('many jobs from two workers: every one succeeds, and no backend ever holds more than its depth', { timeout: 120_000 }, async () => {
    const ids = await Promise.all(
      Array.from({ length: JOBS }, async (_, i) => {
        const body = { prompt: `shared depth ${i}`, type: 'image', width: 64, height: 64, steps: 4 };
        const response = await fetch(`${api!.url}/api/anime/generate`, { method: 'POST', headers, body: JSON.stringify(body) });
        expect(response.status).toBe(202);
        return ((await response.json()) as Json).job_id as string;
      }),
    );
    const rows = () => store.db.selectFrom('jobs').select(['id', 'status', 'attempts']).where('id', 'in', ids).execute();
    await expect.poll(async () => (await rows()).filter((j) => ['succeeded', 'failed', 'canceled'].includes(j.status)).length, { timeout: 90_000, interval: 200 }).toBe(JOBS);
    const done = await rows();
    expect(done.filter((j) => j.status !== 'succeeded')).toEqual([]);
    expect(done.every((j) => j.attempts === 1)).toBe(true);
    expect(await store.db.selectFrom('assets').select('job_id').where('job_id', 'in', ids).execute()).toHaveLength(JOBS);

    // Both workers rendered, on both backends, and each backend was filled to its depth, never past it.
    const logged = () => workers.flatMap((w) => renderedBy(w.output()).filter((id) => ids.includes(id))).length;
    await expect.poll(logged, { timeout: 10_000 }).toBe(JOBS);
    for (const w of workers) expect(renderedBy(w.output()).filter((id) => ids.includes(id)).length).toBeGreaterThan(0);
    expect(doubles.map((d) => d.finished.length).reduce((a, b) => a + b)).toBe(JOBS);
    expect(doubles.map((d) => d.peakQueue)).toEqual([DEPTH, DEPTH]);
    // What sharing costs the GPUs: the pause between one prompt's end and the next one's start.
    const gaps = doubles.flatMap((d) => d.executions.slice(1).map((e, i) => e.startedAt - d.executions[i]!.endedAt)).sort((x, y) => x - y);
    console.log(`idle gap between prompts: p50 ${gaps[Math.floor(gaps.length / 2)]!.toFixed(1)} ms, max ${gaps.at(-1)!.toFixed(1)} ms over ${gaps.length} gaps`);
  });
});
