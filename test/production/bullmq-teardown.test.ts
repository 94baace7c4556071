import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openStore, type Store } from '../../src/db/database.js';
import { EventBus } from '../../src/db/event-bus.js';
import { BullMQQueue, BullMQWorkerHost } from '../../src/production/bullmq-queue.js';
import type { JobWorker } from '../../src/production/worker.js';
import { createTestStorage } from '../support/dialects.js';

const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const jobWorker = { process: async () => {}, interrupt: () => {} } as unknown as JobWorker;
const silent = pino({ level: 'silent' });

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// The store only feeds reconcile here, so one dialect is enough.
describe('scale-out shutdown before Redis is ready', () => {
  let store: Store;
  let drop: () => Promise<void>;
  beforeAll(async () => {
    const storage = await createTestStorage('sqlite');
    drop = storage.drop;
    store = openStore(storage);
    await migrate(store);
  });
  afterAll(async () => {
    await store.close();
    await drop();
  });

  it('closing queue and worker host while their connections are still waiting for Redis leaves no unhandled rejection', { timeout: 20_000 }, async () => {
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', record);
    // Refused first (every client has seen an error), then a server that accepts and never answers:
    // each client is connected but not ready when the service shuts down.
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const bus = EventBus.open(url, 'cf-test-teardown:');
    const settings = { url, prefix: 'cf-test-teardown:', bus };
    const queue = new BullMQQueue(store, settings);
    const host = new BullMQWorkerHost(jobWorker, queue, { ...settings, concurrency: 1, leaseMs: 30_000, log: silent });
    await sleep(300);
    const sockets: Socket[] = [];
    const server: Server = createServer((socket) => sockets.push(socket.on('error', () => {}).resume()));
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    try {
      // queue, the worker, its blocking copy, the bus's subscriber and shared connection
      await expect.poll(() => sockets.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(5);
      await host.close();
      await queue.close();
      bus.close();
      // and no client is left behind (BullMQ does not close connections it was given)
      await expect.poll(() => sockets.filter((socket) => !socket.closed).length, { timeout: 5000 }).toBe(0);
      await sleep(300);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', record);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('closing at any moment of connecting to a live Redis is prompt and leaves no unhandled rejection', { timeout: 60_000 }, async () => {
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', record);
    try {
      for (let ms = 0; ms < 40; ms++) {
        const bus = EventBus.open(REDIS_URL, 'cf-test-teardown:');
        const settings = { url: REDIS_URL, prefix: 'cf-test-teardown:', bus };
        const queue = new BullMQQueue(store, settings);
        const host = new BullMQWorkerHost(jobWorker, queue, { ...settings, concurrency: 1, leaseMs: 30_000, log: silent });
        await sleep(ms / 4);
        const started = Date.now();
        await host.close();
        await queue.close();
        bus.close();
        expect(Date.now() - started).toBeLessThan(3000);
      }
      await sleep(300);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', record);
    }
  });
});
