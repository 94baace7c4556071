import net from 'node:net';
import { once } from 'node:events';
import { expect, it } from 'vitest';
import { openRedis } from '../../src/db/redis.js';

/** A loopback port nothing listens on: every connection to it is refused, as while Redis restarts. */
async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

it('a Redis connection that cannot reach Redis tries again at most 250 ms apart, however long it has failed', { timeout: 20_000 }, async () => {
  const redis = openRedis(`redis://127.0.0.1:${await closedPort()}`, 'celforge-test:');
  redis.on('error', () => {});
  const delays: number[] = [];
  redis.on('reconnecting', (delay: number) => delays.push(delay));
  try {
    await expect.poll(() => delays.length, { timeout: 15_000, interval: 50 }).toBeGreaterThanOrEqual(12);
  } finally {
    redis.disconnect();
  }
  expect(Math.max(...delays)).toBeLessThanOrEqual(250);
});
