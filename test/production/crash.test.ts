import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/db/database.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';
import { startServer, type RunningServer } from '../support/server.js';
import { ROOMY_LIMITS_ENV } from './helpers.js';
import { mintToken } from './real-process.js';

type Json = Record<string, any>;

const ENV = { CELFORGE_PREVIEW_STEP_MS: '100', CELFORGE_JOB_LEASE: '2s', CELFORGE_WORKER_CONCURRENCY: '2', ...ROOMY_LIMITS_ENV };
const JOBS = 6;

describeEachDialect('kill -9 during running jobs', (dialect) => {
  let storage: TestStorage;
  let store: Store;
  let server: RunningServer | undefined;

  beforeAll(async () => {
    storage = await createTestStorage(dialect);
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    await store?.close();
    await storage.drop();
  });

  it('a restart finishes every accepted job, with exactly one set of outputs', { timeout: 120_000 }, async () => {
    server = await startServer(storage, { env: ENV });
    store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
    const token = await mintToken(store, storage);
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      const type = i % 2 ? 'video' : 'image';
      const body = { prompt: `crash ${i}`, type, width: 64, height: 64, steps: 20, ...(type === 'video' && { frames: 20 }) };
      const response = await fetch(`${server.url}/api/anime/generate`, { method: 'POST', headers, body: JSON.stringify(body) });
      expect(response.status).toBe(202);
      ids.push(((await response.json()) as Json).job_id);
    }
    const running = async () => (await store.db.selectFrom('jobs').select('id').where('status', '=', 'running').execute()).length;
    await expect.poll(running, { timeout: 20_000, interval: 50 }).toBe(2);

    expect(await server.stop('SIGKILL')).toBeNull();
    const atKill = await store.db.selectFrom('jobs').select(['id', 'status']).where('id', 'in', ids).execute();
    expect(atKill.filter((job) => job.status === 'running')).toHaveLength(2);
    expect(atKill.filter((job) => job.status === 'succeeded').length).toBeLessThan(JOBS);

    server = await startServer(storage, { env: ENV });
    const finished = async () =>
      (await store.db.selectFrom('jobs').select('id').where('id', 'in', ids).where('status', 'in', ['succeeded', 'failed', 'canceled']).execute()).length;
    await expect.poll(finished, { timeout: 90_000, interval: 200 }).toBe(JOBS);

    const rows = await store.db.selectFrom('jobs').selectAll().where('id', 'in', ids).execute();
    const interrupted = new Set(atKill.filter((job) => job.status === 'running').map((job) => job.id));
    for (const row of rows) {
      expect(row.status).toBe('succeeded');
      // the jobs killed mid-render ran once more; the others ran once
      expect(row.attempts).toBe(interrupted.has(row.id) ? 2 : 1);
    }
    const assets = await store.db.selectFrom('assets').selectAll().where('job_id', 'in', ids).execute();
    // an image job keeps one file; a video job two (MP4, animation)
    const videos = Math.floor(JOBS / 2);
    expect(assets).toHaveLength(JOBS - videos + 2 * videos);
    expect(new Set(assets.map((a) => a.job_id)).size).toBe(JOBS);
    expect(new Set(assets.map((a) => `${a.job_id}/${a.position}`)).size).toBe(assets.length);

    const files = readdirSync(path.join(storage.dataDir, 'assets')).filter((name) => !name.endsWith('.tmp'));
    expect(files.sort()).toEqual(assets.map((a) => a.storage_key).sort());

    // every result opens through the API, with no path in any answer
    for (const id of ids) {
      const response = await fetch(`${server.url}/api/anime/jobs/${id}`, { headers });
      const text = await response.text();
      expect(text).not.toContain(storage.dataDir);
      const job = JSON.parse(text) as Json;
      const bytes = await fetch(`${server.url}${job.assets[0].url}`);
      expect(bytes.status).toBe(200);
      expect(Number(bytes.headers.get('content-length'))).toBe(job.assets[0].byte_size);
    }
  });
});
