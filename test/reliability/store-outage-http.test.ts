import path from 'node:path';
import SQLite from 'better-sqlite3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/db/database.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';
import { startServer, type RunningServer } from '../support/server.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { expectNoPath, ROOMY_LIMITS_ENV } from '../production/helpers.js';
import { mintToken } from '../production/real-process.js';

type Json = Record<string, any>;

describeEachDialect('requests during a store outage', (dialect) => {
  let storage: TestStorage;
  let store: Store;
  let proxy: TcpProxy | undefined;
  let server: RunningServer | undefined;
  let headers: Record<string, string>;

  beforeAll(async () => {
    storage = await createTestStorage(dialect);
    store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
    let serverStorage: { dataDir: string; databaseUrl?: string } = storage;
    if (storage.databaseUrl) {
      const target = new URL(storage.databaseUrl);
      proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
      serverStorage = { dataDir: storage.dataDir, databaseUrl: proxy.url(storage.databaseUrl) };
    }
    server = await startServer(serverStorage, { env: { CELFORGE_LOG_LEVEL: 'info', ...ROOMY_LIMITS_ENV } });
    headers = { authorization: `Bearer ${await mintToken(store, storage)}`, 'content-type': 'application/json' };
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    await proxy?.close();
    await store?.close();
    await storage.drop();
  });

  /** PostgreSQL: the connection is cut. SQLite: another process holds the write lock past the busy timeout. */
  function outage(): () => void {
    if (proxy) {
      proxy.cut();
      return () => proxy!.restore();
    }
    const holder = new SQLite(path.join(storage.dataDir, 'celforge.db'));
    holder.exec('begin immediate');
    return () => {
      holder.exec('rollback');
      holder.close();
    };
  }

  const generate = (i: number) =>
    fetch(`${server!.url}/api/anime/generate`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ prompt: `during the outage ${i}`, type: 'image', width: 64, height: 64, steps: 2 }),
    });
  const logLines = (text: string) => server!.output().split('\n').filter((line) => line.includes(text));

  it('answers 503 problem+json with Retry-After, logs the outage once, and recovers by itself', { timeout: 90_000 }, async () => {
    expect((await generate(0)).status).toBe(202);
    const end = outage();
    let answers: Response[];
    try {
      // SQLite waits out its 5 s busy timeout synchronously, in every statement: one request is enough there
      answers = await Promise.all((dialect === 'postgres' ? [1, 2, 3, 4, 5, 6] : [1]).map(generate));
    } finally {
      if (dialect === 'postgres') {
        // /ready says so while it lasts
        const ready = await fetch(`${server!.url}/api/anime/ready`);
        expect(ready.status).toBe(503);
        expect(((await ready.json()) as Json).failed).toContain('store');
      }
      end();
    }
    for (const response of answers) {
      expect(response.status).toBe(503);
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(response.headers.get('retry-after')).toBe('5');
      const text = await response.text();
      expectNoPath(text);
      expect(JSON.parse(text)).toMatchObject({ type: 'urn:celforge:problem:store-unavailable', status: 503 });
    }
    // the server's log reaches this process through a pipe, a moment after the answers
    await expect.poll(() => logLines('store unavailable').length, { timeout: 10_000 }).toBe(1);
    expect(logLines('unhandled error')).toEqual([]);
    // the audit writer's retries are part of the same outage
    if (dialect === 'postgres') expect(logLines('audit: could not store')).toEqual([]);

    const began = Date.now();
    await expect.poll(async () => (await fetch(`${server!.url}/api/anime/ready`)).status, { timeout: 10_000, interval: 100 }).toBe(200);
    expect(Date.now() - began).toBeLessThan(10_000);
    expect((await generate(7)).status).toBe(202);
    await expect.poll(() => logLines('store available again').length, { timeout: 15_000 }).toBe(1);
    expect(logLines('store unavailable')).toHaveLength(1);
    expect(server!.process.exitCode).toBeNull();
  });
});
