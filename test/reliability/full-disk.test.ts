import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/db/database.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';
import { startServer, type RunningServer } from '../support/server.js';
import { canMountTmpfs, mountTmpfs } from '../support/tmpfs.js';
import { expectNoPath, ROOMY_LIMITS_ENV } from '../production/helpers.js';
import { mintToken } from '../production/real-process.js';

type Json = Record<string, any>;
const METRICS_TOKEN = 'full-disk-metrics-token-0123456789';
const ENV = { CELFORGE_PREVIEW_STEP_MS: '5', CELFORGE_LOG_LEVEL: 'info', CELFORGE_METRICS_TOKEN: METRICS_TOKEN, ...ROOMY_LIMITS_ENV };

if (!canMountTmpfs) describe.skip('a full asset disk (needs root and tmpfs)', () => {});
else
  describeEachDialect('a full or read-only asset disk', (dialect) => {
    let storage: TestStorage;
    let store: Store;
    let server: RunningServer | undefined;
    let disk: ReturnType<typeof mountTmpfs>;
    let headers: Record<string, string>;
    const assetsDir = () => path.join(storage.dataDir, 'assets');

    beforeAll(async () => {
      storage = await createTestStorage(dialect);
      disk = mountTmpfs(assetsDir(), '512k');
      server = await startServer(storage, { env: ENV });
      store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
      headers = { authorization: `Bearer ${await mintToken(store, storage)}`, 'content-type': 'application/json' };
    });
    afterAll(async () => {
      await server?.stop('SIGKILL');
      await store?.close();
      disk?.unmount();
      await storage.drop();
    });

    async function submit(prompt: string): Promise<string> {
      const body = { prompt, type: 'image', width: 64, height: 64, steps: 3 };
      const response = await fetch(`${server!.url}/api/anime/generate`, { method: 'POST', headers, body: JSON.stringify(body) });
      expect(response.status).toBe(202);
      return ((await response.json()) as Json).job_id;
    }
    const job = async (id: string) => (await (await fetch(`${server!.url}/api/anime/jobs/${id}`, { headers })).json()) as Json;
    const ready = async () => {
      const response = await fetch(`${server!.url}/api/anime/ready`);
      return { status: response.status, body: (await response.json()) as Json };
    };
    const metric = async () => {
      const text = await (await fetch(`${server!.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
      return /celforge_ready\{check="assets_writable"\} (\d)/.exec(text)?.[1];
    };

    it('is reported by /ready and the metric; a save waits for room instead of failing the job', { timeout: 60_000 }, async () => {
      expect((await ready()).status).toBe(200);
      expect(await metric()).toBe('1');
      disk.fill();
      await expect.poll(async () => (await ready()).status, { timeout: 5_000 }).toBe(503);
      const { body } = await ready();
      expect(body.type).toBe('urn:celforge:problem:not-ready');
      expect(body.failed).toEqual(['assets_writable']);
      expectNoPath(JSON.stringify(body));
      expect(await metric()).toBe('0');

      const id = await submit('waits for room');
      await expect.poll(() => server!.output().includes('could not save a finished render; trying again'), { timeout: 20_000 }).toBe(true);
      expect((await job(id)).status).toBe('running');
      disk.free();
      await expect.poll(async () => (await job(id)).status, { timeout: 20_000, interval: 100 }).toBe('succeeded');
      const view = await job(id);
      expect(view.assets).toHaveLength(1);
      expect((await fetch(`${server!.url}${view.assets[0].url}`)).status).toBe(200);
      await expect.poll(async () => (await ready()).status, { timeout: 5_000 }).toBe(200);
      expect(await metric()).toBe('1');
    });

    it('a disk that stays full fails the job with the true reason, leaves no file, and the service keeps answering', { timeout: 90_000 }, async () => {
      disk.fill();
      const id = await submit('never room');
      await expect.poll(async () => (await job(id)).status, { timeout: 75_000, interval: 250 }).toBe('failed');
      const view = await job(id);
      expect(view.error).toMatch(/could not be saved \(the storage is full\)/);
      expect(view.error).not.toMatch(/renderer/);
      expectNoPath(JSON.stringify(view));
      expect(await store.db.selectFrom('assets').select('id').where('job_id', '=', id).execute()).toEqual([]);
      expect(readdirSync(assetsDir()).filter((name) => name.startsWith(id))).toEqual([]);
      expect((await fetch(`${server!.url}/api/anime/jobs`, { headers })).status).toBe(200);
      disk.free();
    });

    it('a read-only asset disk makes the instance not ready until it is writable again', { timeout: 30_000 }, async () => {
      disk.readOnly(true);
      try {
        await expect.poll(async () => (await ready()).body.failed, { timeout: 5_000 }).toEqual(['assets_writable']);
      } finally {
        disk.readOnly(false);
      }
      await expect.poll(async () => (await ready()).status, { timeout: 5_000 }).toBe(200);
    });
  });
