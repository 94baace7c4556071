import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/db/database.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';
import { startServer, type RunningServer } from '../support/server.js';
import { ROOMY_LIMITS_ENV } from '../production/helpers.js';
import { mintToken } from '../production/real-process.js';

type Json = Record<string, any>;
const GRACE_S = 3;
const ENV = { CELFORGE_PREVIEW_STEP_MS: '100', CELFORGE_WORKER_CONCURRENCY: '2', CELFORGE_SHUTDOWN_GRACE: `${GRACE_S}s`, ...ROOMY_LIMITS_ENV };

/** A client that sends headers announcing a body, then nothing: its request stays in flight. */
function stalledClient(url: string, token: string): { closed: Promise<number> } {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  socket.on('error', () => {});
  socket.write(
    `POST /api/anime/generate HTTP/1.1\r\nHost: ${hostname}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"prompt":`,
  );
  return { closed: new Promise((resolve) => socket.on('close', () => resolve(Date.now()))) };
}

describeEachDialect('SIGTERM with running jobs, an event stream and a stalled client', (dialect) => {
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

  it('stops claiming and hands running jobs back at once, ends streams with a shutdown event, exits within the grace period', { timeout: 120_000 }, async () => {
    server = await startServer(storage, { env: ENV });
    store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
    const token = await mintToken(store, storage);
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const body = { prompt: `sigterm ${i}`, type: 'image', width: 64, height: 64, steps: 100 };
      const response = await fetch(`${server.url}/api/anime/generate`, { method: 'POST', headers, body: JSON.stringify(body) });
      expect(response.status).toBe(202);
      ids.push(((await response.json()) as Json).job_id);
    }
    const count = async (status: 'running' | 'queued') =>
      (await store.db.selectFrom('jobs').select('id').where('id', 'in', ids).where('status', '=', status).execute()).length;
    await expect.poll(() => count('running'), { timeout: 20_000, interval: 50 }).toBe(2);

    const stream = fetch(`${server.url}/api/anime/jobs/${ids[2]}/events`, { headers }).then((response) => response.text());
    const stalled = stalledClient(server.url, token);
    await new Promise((resolve) => setTimeout(resolve, 300));

    const sent = Date.now();
    const exited = server.stop('SIGTERM');
    // the stalled request keeps the process up, but it renders nothing more: both jobs are back in the queue
    await expect.poll(() => count('queued'), { timeout: 2_000, interval: 50 }).toBe(3);
    expect(server.process.exitCode).toBeNull();

    const text = await stream;
    const last = text.trim().split('\n\n').at(-1)!;
    expect(last).toMatch(/^event: shutdown\nretry: \d+\ndata: /);
    expect(JSON.parse(last.split('data: ')[1]!)).toEqual({ job_id: ids[2], reason: 'server-shutting-down' });

    expect(await exited).toBe(0);
    const took = Date.now() - sent;
    expect(took).toBeGreaterThanOrEqual(GRACE_S * 1000 - 200);
    expect(took).toBeLessThan(GRACE_S * 1000 + 4_000);
    expect((await stalled.closed) - sent).toBeLessThan(GRACE_S * 1000 + 1_000);
    // handed back with the attempt given back: none of them counts a run
    const rows = await store.db.selectFrom('jobs').select(['status', 'attempts']).where('id', 'in', ids).execute();
    expect(rows.every((row) => row.status === 'queued' && row.attempts === 0)).toBe(true);

    server = await startServer(storage, { env: { ...ENV, CELFORGE_PREVIEW_STEP_MS: '2' } });
    await expect.poll(async () => count('queued') .then(async (q) => q + (await count('running'))), { timeout: 60_000, interval: 200 }).toBe(0);
    const done = await store.db.selectFrom('jobs').select(['status', 'attempts']).where('id', 'in', ids).execute();
    expect(done).toEqual([
      { status: 'succeeded', attempts: 1 },
      { status: 'succeeded', attempts: 1 },
      { status: 'succeeded', attempts: 1 },
    ]);
  });
});

/** Resolves once nothing accepts connections on the server's port any more (it has begun to close). */
async function refusesConnections(url: string): Promise<void> {
  const { hostname, port } = new URL(url);
  for (;;) {
    const refused = await new Promise<boolean>((resolve) => {
      const probe = net.connect(Number(port), hostname);
      probe.once('connect', () => {
        probe.destroy();
        resolve(false);
      });
      probe.once('error', () => resolve(true));
    });
    if (refused) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('a request that completes on an open connection after SIGTERM', () => {
  let storage: TestStorage;
  let store: Store;
  let server: RunningServer | undefined;

  beforeAll(async () => {
    storage = await createTestStorage('sqlite');
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    await store?.close();
    await storage.drop();
  });

  it('is served to the end (the job is accepted and kept), with the connection closed after it', { timeout: 60_000 }, async () => {
    server = await startServer(storage, { env: ENV });
    store = openStore({ dataDir: storage.dataDir });
    const token = await mintToken(store, storage);
    const { hostname, port } = new URL(server.url);
    const socket = net.connect(Number(port), hostname);
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString()));
    const closed = new Promise((resolve) => socket.on('close', resolve));
    await new Promise((resolve) => socket.once('connect', resolve));
    // half a request: the connection is busy, so the shutdown waits for it rather than dropping it as idle
    socket.write(`POST /api/anime/generate HTTP/1.1\r\nHost: ${hostname}\r\n`);

    const exited = server.stop('SIGTERM');
    await refusesConnections(server.url);
    const body = JSON.stringify({ prompt: 'after the signal', type: 'image', width: 64, height: 64, steps: 2 });
    socket.write(`Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await closed;
    expect(await exited).toBe(0);

    const [head, json] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 202 /);
    expect(head).toMatch(/\r\nconnection: close\r\n/i);
    const { job_id: jobId } = JSON.parse(json!) as Json;
    const row = await store.db.selectFrom('jobs').select('status').where('id', '=', jobId).executeTakeFirst();
    expect(row?.status).toBe('queued');
  });
});
